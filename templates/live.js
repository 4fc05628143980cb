// Replace the element #live with each HTML fragment the server streams (Server-Sent Events).
(function () {
  const target = document.getElementById("live");
  const source = new EventSource(target.dataset.stream);
  source.addEventListener("fragment", (event) => { target.innerHTML = event.data; });
  source.onerror = () => { target.dataset.connection = "lost"; };
  source.onopen = () => { target.dataset.connection = "open"; };
})();
