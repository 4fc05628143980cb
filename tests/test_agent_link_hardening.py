"""The agent link under hostile or heavy input (issue 14, findings 1, 5, 9, 10, 13, 16).

Frames stay under an explicit size on both ends, a message that cannot be encoded fails its
job rather than the link, every task that owns a socket is supervised, state changes reach
the database off the read loop, a second connection with a live agent's id is refused, and a
non-ASCII agent token is a 401.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from agent.embedding_frames import embedding_frames
from agent.engine.embedder import Embedder, EmbeddingStopped
from agent.engine.model import Model
from control_plane.credentials import secrets_match
from control_plane.db.engine import create_engine
from control_plane.db.migrate import upgrade
from control_plane.db.store import Store
from control_plane.management.agent_outbox import UNENCODABLE, write_frames
from control_plane.management.agent_records import AgentRecorder
from control_plane.management.agent_socket import ID_IN_USE
from control_plane.management.connection_tasks import supervise
from control_plane.management.embedding_assembly import EmbeddingAssembly, PartRefused
from control_plane.serving.fleet import AgentLink
from paddler import protocol
from tests.processes import AGENT_TOKEN, Agent, ControlPlane, wait_until

# a float32 whose shortest double repr is as long as they get
LONGEST_VALUE = -1.1754942106924411e-38


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def chat_job(
    job_id: str, content: str = "hi", schema: dict[str, Any] | None = None
) -> protocol.Job:
    sampling = protocol.SamplingParams(
        response_format=protocol.ResponseFormat(type="json_schema", json_schema=schema)
        if schema
        else None
    )
    request = protocol.GenerationRequest(
        kind="chat",
        messages=(protocol.ChatMessage(role="user", content=content),),
        sampling=sampling,
    )
    return protocol.Job(job_id=job_id, request=request)


# -- bounded frames (findings 1, 13) ---------------------------------------------------------


def test_embedding_frames_stay_under_the_limit_and_reassemble_in_order() -> None:
    limit = 256 * 1024
    vectors = [[LONGEST_VALUE] * 575 + [index / 7] for index in range(300)]
    frames = embedding_frames("job", vectors, prompt_tokens=900, max_frame_bytes=limit)

    assert len(frames) > 1
    assert all(len(protocol.encode(frame).encode()) <= limit for frame in frames)
    assembly = EmbeddingAssembly()
    *parts, last = (protocol.decode_agent_message(protocol.encode(frame)) for frame in frames)
    for part in parts:
        assert isinstance(part, protocol.EmbeddingsPart)
        assembly.add(part, inputs=len(vectors))
    assert isinstance(last, protocol.Embeddings)
    whole = assembly.complete(last)
    assert [list(vector) for vector in whole.vectors] == vectors
    assert whole.prompt_tokens == 900


def test_a_small_answer_is_one_embeddings_frame() -> None:
    [frame] = embedding_frames("job", [[0.5, 0.5]], prompt_tokens=2, max_frame_bytes=65536)
    assert frame == protocol.Embeddings(job_id="job", vectors=((0.5, 0.5),), prompt_tokens=2)


def test_parts_out_of_order_or_beyond_the_inputs_are_refused() -> None:
    assembly = EmbeddingAssembly()
    with pytest.raises(PartRefused):
        assembly.add(protocol.EmbeddingsPart(job_id="j", first_index=1, vectors=((1.0,),)), 4)
    with pytest.raises(PartRefused):
        assembly.add(protocol.EmbeddingsPart(job_id="j", first_index=0, vectors=((1.0,),) * 5), 4)
    last = protocol.Embeddings(job_id="j", vectors=((2.0,),), prompt_tokens=1)
    assert assembly.complete(last) == last  # nothing of the refused parts is kept


def test_embedding_work_stops_when_its_stop_flag_is_set(tiny_model_path: Path) -> None:
    model = Model.load(tiny_model_path)
    embedder = Embedder(model, context_size=64, threads=1, max_sequences=1)
    try:
        stop = threading.Event()
        assert len(embedder.embed(["a", "b"], stop).vectors) == 2
        stop.set()
        with pytest.raises(EmbeddingStopped, match="stopped after 0 of 2 embeddings"):
            embedder.embed(["a", "b"], stop)
    finally:
        embedder.close()
        model.close()


# -- frames that cannot be sent, supervised tasks (finding 10) -------------------------------


async def test_a_job_that_cannot_be_encoded_or_is_too_large_fails_alone() -> None:
    link = AgentLink(agent_id="a", name="a", pool="m", model="m", slots=4)
    sent: list[str] = []  # stands for the agent's websocket
    refused: dict[str, str] = {}

    all_sent = asyncio.Event()

    async def send(frame: str) -> None:
        sent.append(frame)
        if len(sent) == 2:
            all_sent.set()

    link.send(chat_job("surrogate", "hi \ud800 there"))
    link.send(chat_job("deep", schema=nested(400)))
    link.send(chat_job("huge", "x" * 5000))
    link.send(chat_job("fine"))
    link.send(protocol.Cancel(job_id="fine"))
    writer = asyncio.create_task(
        write_frames(link, send, lambda job, why: refused.update({job.job_id: why}), 4096)
    )
    try:
        await asyncio.wait_for(all_sent.wait(), 10)
    finally:
        writer.cancel()

    assert refused["surrogate"] == refused["deep"] == UNENCODABLE
    assert "too large" in refused["huge"]
    assert [json.loads(frame)["type"] for frame in sent] == ["job", "cancel"]


async def test_a_failed_connection_task_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[tuple[int, str]] = []  # stands for the websocket's close

    async def close(code: int, reason: str) -> None:
        closed.append((code, reason))

    async def broken_writer() -> None:
        raise RuntimeError("writer bug")

    reader = asyncio.create_task(asyncio.Event().wait(), name="reader")
    writer = asyncio.create_task(broken_writer(), name="writer")
    with caplog.at_level(logging.ERROR, "paddler.agents"):
        reason = await supervise("a", reader, writer, close=close)  # type: ignore[arg-type]
    reader.cancel()

    assert "writer failed" in reason and "writer bug" in reason
    assert closed == [(1011, "control plane writer failed")]
    assert "the writer of agent a's connection stopped" in caplog.text


async def test_a_reader_that_ends_gives_its_reason() -> None:
    async def read() -> str:
        return "said goodbye"

    async def close(code: int, reason: str) -> None:
        raise AssertionError("nothing to close")

    reader = asyncio.create_task(read(), name="reader")
    writer = asyncio.create_task(asyncio.Event().wait(), name="writer")
    assert await supervise("a", reader, writer, close=close) == "said goodbye"
    writer.cancel()


# -- database off the read loop (finding 5) --------------------------------------------------


async def test_state_changes_are_recorded_and_a_database_error_is_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    store = Store(create_engine(url))
    await store.ensure_pool("m", "/m.gguf", 1)
    await store.agent_connected("a", "a", "m", "loading", None)
    recorder = AgentRecorder(store, "a", "a")
    running = asyncio.create_task(recorder.run())
    try:
        recorder.state_changed("ready")
        await recorder.written()
        agent = await store.get_agent("a")
        assert agent is not None and agent.last_state == "ready"

        with sqlite3.connect(path) as database:  # a real SQL error: the table is gone
            database.execute("ALTER TABLE agents RENAME TO agents_away")
        with caplog.at_level(logging.ERROR, "paddler.agents"):
            recorder.state_changed("draining")
            await recorder.written()
        assert "could not record that agent a is draining" in caplog.text
        assert not running.done()

        with sqlite3.connect(path) as database:
            database.execute("ALTER TABLE agents_away RENAME TO agents")
        recorder.state_changed("error")
        await recorder.written()
        agent = await store.get_agent("a")
        assert agent is not None and agent.last_state == "error"
    finally:
        running.cancel()
        await store.close()


# -- secrets (finding 9) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("presented", "expected", "match"),
    [("tøken", "tøken", True), ("éé", "token", False), ("token", "éé", False), ("", "t", False)],
)
def test_secrets_are_compared_as_bytes(presented: str, expected: str, match: bool) -> None:
    assert secrets_match(presented, expected) is match


# -- real processes ----------------------------------------------------------------------------


@pytest.fixture
def plane(tmp_path: Path) -> Any:
    # a small frame limit, so that the tiny model's 64-wide vectors need several frames
    control_plane = ControlPlane(
        tmp_path, "--agent-max-frame-bytes", "262144", "--buffer-timeout", "20"
    )
    control_plane.start()
    yield control_plane
    control_plane.stop()


@pytest.fixture
def tiny_agent(plane: ControlPlane, tmp_path: Path, tiny_model_path: Path) -> Any:
    agent = Agent(plane, tmp_path, "tiny", tiny_model_path, slots=2, embeddings=True)
    agent.start()
    plane.wait_for_ready_agent("tiny")
    yield agent
    agent.stop()


def chat(plane: ControlPlane, content: str = "Hello", **extra: Any) -> httpx.Response:
    body = {
        "model": "tiny-llama",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 8,
        **extra,
    }
    return httpx.post(plane.inference_url + "/v1/chat/completions", json=body, timeout=60)


def test_2048_embeddings_come_back_whole_beside_a_stream(
    plane: ControlPlane, tiny_agent: Agent
) -> None:
    inputs = [f"word {index}" for index in range(2048)]
    streamed: dict[str, Any] = {}

    def stream() -> None:
        body = {
            "model": "tiny-llama",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 300,
            "stream": True,
        }
        with httpx.stream(
            "POST", plane.inference_url + "/v1/chat/completions", json=body, timeout=120
        ) as response:
            streamed["status"] = response.status_code
            streamed["lines"] = list(response.iter_lines())

    streamer = threading.Thread(target=stream)
    streamer.start()
    response = httpx.post(
        plane.inference_url + "/v1/embeddings",
        json={"model": "tiny-llama", "input": inputs, "encoding_format": "float"},
        timeout=180,
    )
    streamer.join(120)

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [item["index"] for item in data] == list(range(2048))
    alone = httpx.post(
        plane.inference_url + "/v1/embeddings",
        json={"model": "tiny-llama", "input": inputs[1234], "encoding_format": "float"},
        timeout=60,
    ).json()["data"][0]["embedding"]
    assert sum(a * b for a, b in zip(data[1234]["embedding"], alone, strict=True)) > 1 - 1e-4
    assert streamed["status"] == 200
    chunks = [json.loads(line[6:]) for line in streamed["lines"] if line.startswith("data: {")]
    reasons = [choice.get("finish_reason") for chunk in chunks for choice in chunk["choices"]]
    assert "length" in reasons  # the stream on the same agent got its whole answer
    assert "left pool" not in plane.log(None)
    frames = re.search(r"2048 embeddings in (\d+) frame", tiny_agent.log(None))
    assert frames is not None and int(frames[1]) > 1


def test_a_request_the_link_cannot_carry_fails_alone_and_the_agent_keeps_serving(
    plane: ControlPlane, tiny_agent: Agent
) -> None:
    raw = (
        '{"model": "tiny-llama", "max_tokens": 4,'
        ' "messages": [{"role": "user", "content": "hi \\ud800 there"}]}'
    )
    surrogate = httpx.post(
        plane.inference_url + "/v1/chat/completions",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert surrogate.status_code == 400, surrogate.text
    assert surrogate.json()["error"]["type"] == "invalid_request_error"

    deep = chat(
        plane,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "deep", "schema": nested(150)},
        },
    )
    assert deep.status_code in (200, 400), deep.text
    if deep.status_code == 400:
        assert deep.json()["error"]["type"] == "invalid_request_error"

    for _ in range(4):  # more requests than slots: none may vanish on the agent
        answer = chat(plane)
        assert answer.status_code == 200, answer.text
    agent = plane.agent("tiny")
    assert agent is not None and agent["state"] == "ready"


def test_a_second_connection_with_a_live_agents_id_is_refused(
    plane: ControlPlane, tiny_agent: Agent
) -> None:
    [live] = [agent for agent in plane.agents() if agent["connected"]]
    url = plane.management_url.replace("http://", "ws://") + protocol.AGENT_SOCKET_PATH
    hello = protocol.Hello(
        agent_id=live["id"],
        name="impostor",
        version="0",
        slots=1,
        model="tiny-llama",
        model_source="/elsewhere.gguf",
        pool="tiny-llama",
    )
    with connect(url, additional_headers={"Authorization": f"Bearer {AGENT_TOKEN}"}) as impostor:
        impostor.send(protocol.encode(hello))
        with pytest.raises(ConnectionClosed):
            impostor.recv(timeout=10)
        assert impostor.close_code == 1008
        assert impostor.close_reason == ID_IN_USE

    assert "refused agent impostor" in plane.log(None)
    agent = plane.agent("tiny")
    assert agent is not None and agent["id"] == live["id"] and agent["state"] == "ready"
    assert chat(plane).status_code == 200


def test_a_non_ascii_agent_token_is_refused_with_401(plane: ControlPlane) -> None:
    request = (
        f"GET {protocol.AGENT_SOCKET_PATH} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{plane.management_port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    ).encode() + "Authorization: Bearer éé\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", plane.management_port), timeout=10) as client:
        client.sendall(request)
        status_line = client.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"401", status_line
    assert "Traceback" not in plane.log(None)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_the_agent_socket_compresses_only_when_the_agent_asks(
    plane: ControlPlane, compression: str | None
) -> None:
    """Token frames are small and many: no permessage-deflate unless the agent asks for it
    (``AgentRunner(compression=True)``)."""
    url = plane.management_url.replace("http://", "ws://") + protocol.AGENT_SOCKET_PATH
    headers = {"Authorization": f"Bearer {AGENT_TOKEN}"}
    with connect(url, additional_headers=headers, compression=compression) as link:
        assert link.response is not None
        extensions = link.response.headers.get("Sec-WebSocket-Extensions", "")
    assert ("permessage-deflate" in extensions) == (compression is not None), extensions


def test_a_stopped_agent_does_not_wait_for_a_long_embedding_job(
    plane: ControlPlane, tmp_path: Path, smollm2_path: Path
) -> None:
    agent = Agent(plane, tmp_path, "smol", smollm2_path, embeddings=True)
    agent.args += ["--shutdown-grace", "1"]
    agent.start()
    plane.wait_for_ready_agent("smol", timeout=120)
    answer: dict[str, httpx.Response] = {}
    sentence = "a long sentence about paddles, canoes, rivers and the people who row them"

    def embed() -> None:
        # minutes of work on SmolLM2: ~40,000 tokens
        inputs = [f"{sentence} ({index})" for index in range(2048)]
        answer["response"] = httpx.post(
            plane.inference_url + "/v1/embeddings",
            json={"model": smollm2_path.stem, "input": inputs},
            timeout=180,
        )

    asker = threading.Thread(target=embed)
    asker.start()
    try:
        wait_until(lambda: "running job" in agent.log(None), timeout=60, what="the job to start")
        agent.signal(signal.SIGTERM)
        assert agent.process is not None
        agent.process.wait(30)  # its grace, then the batch in progress: not the whole job
        assert re.search(r"stopped after \d+ of 2048 embeddings", agent.log(None))
    finally:
        agent.stop()
        asker.join(180)
    response = answer["response"]
    if response.status_code == 200:  # another agent's whole answer, never a cut one
        assert len(response.json()["data"]) == 2048
    else:
        assert "error" in response.json()
