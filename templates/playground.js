// Send the form as a streaming chat completion and show the text as it arrives.
(function () {
  const form = document.getElementById("playground");
  const answer = document.getElementById("answer");
  const status = document.getElementById("answer-status");

  function show(event) {
    if (event.error) { status.textContent = "Error: " + event.error.message; return; }
    const delta = event.choices && event.choices[0] && event.choices[0].delta;
    if (delta && delta.content) { answer.textContent += delta.content; }
  }

  async function send(submitted) {
    submitted.preventDefault();
    answer.textContent = "";
    status.textContent = "Waiting for an agent…";
    const headers = { "Content-Type": "application/json" };
    const key = document.getElementById("api-key");
    if (key && key.value) { headers["Authorization"] = "Bearer " + key.value; }
    const body = {
      model: document.getElementById("pool").value,
      messages: [{ role: "user", content: document.getElementById("prompt").value }],
      max_tokens: Number(document.getElementById("max-tokens").value) || 64,
      stream: true,
    };
    const base = document.getElementById("inference-url").value.replace(/\/+$/, "");
    let response;
    try {
      response = await fetch(base + "/v1/chat/completions", { method: "POST", headers, body: JSON.stringify(body) });
    } catch (error) {
      status.textContent = "Cannot reach " + base + ": " + error;
      return;
    }
    if (!response.ok) {
      const failure = await response.json().catch(() => ({ error: { message: response.statusText } }));
      status.textContent = "Error " + response.status + ": " + failure.error.message;
      return;
    }
    status.textContent = "Streaming… (request id " + (response.headers.get("X-Request-Id") || "?") + ")";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) { break; }
      buffered += decoder.decode(value, { stream: true });
      const lines = buffered.split("\n");
      buffered = lines.pop();
      for (const line of lines) {
        if (!line.startsWith("data: ")) { continue; }
        const data = line.slice(6);
        if (data === "[DONE]") { status.textContent = "Done."; continue; }
        show(JSON.parse(data));
      }
    }
  }

  form.addEventListener("submit", send);
})();
