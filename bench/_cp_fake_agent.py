"""A fake agent for bench/control_plane.py: it stands for a real agent (agent/runner.py, which
tests/test_agent_connection.py and the serving tests exercise) without a model behind it.

It speaks the real protocol (``paddler.protocol``) over the agent websocket and generates like a
GPU server decoding a batch: every decode step gives each running job one token, sent as one
frame per job (``--frames each``) or as one batch frame per step (``--frames batch``), and a job
ends with ``Done`` once it has its ``max_tokens`` (default 16). There is no sleep between steps:
the control plane's reading is what paces it.

The first token's text is ``#N `` where N counts the jobs in the order they arrived (from 1),
which lets the benchmark check that the buffer served its waiters in order. With ``--hold`` it
says it is loading until it gets SIGUSR1, then ready; it prints how long its first job took to
come after that.

    python bench/_cp_fake_agent.py --control-plane http://127.0.0.1:8060 --slots 64 --agents 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
import uuid
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.runner import socket_url
from paddler import protocol

DEFAULT_TOKENS = 16
TOKEN_TEXT = "tok "


class FakeAgent:
    def __init__(
        self, url: str, token: str, name: str, pool: str, slots: int, *, batch: bool
    ) -> None:
        self.url = url
        self.token = token
        self.name = name
        self.pool = pool
        self.slots = slots
        self.batch = batch
        self.arrived = 0  # jobs received, for the ``#N`` of each first token
        self._running: dict[str, list[int]] = {}  # job id -> [tokens sent, tokens wanted]
        self._work = asyncio.Event()
        self._ready_at: float | None = None

    async def run(self, ready: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with connect(
            self.url, additional_headers=headers, compression=None, max_size=None
        ) as socket:
            await socket.send(protocol.encode(self._hello()))
            welcome = protocol.decode_control_plane_message(await socket.recv())
            assert isinstance(welcome, protocol.Welcome), welcome
            await socket.send(protocol.encode(self._status("loading")))
            await asyncio.gather(
                self._read(socket), self._decode(socket), self._become_ready(socket, ready)
            )

    def _hello(self) -> protocol.Hello:
        return protocol.Hello(
            agent_id=uuid.uuid4().hex,
            name=self.name,
            version="bench",
            slots=self.slots,
            model=self.pool,
            model_source=f"fake://{self.pool}",
            pool=self.pool,
        )

    def _status(self, state: protocol.AgentState) -> protocol.Status:
        return protocol.Status(
            state=state,
            slots_busy=len(self._running),
            slots_total=self.slots,
            model=self.pool,
        )

    async def _become_ready(self, socket: ClientConnection, ready: asyncio.Event) -> None:
        """Heartbeats, as a real agent sends them: loading until ``ready`` is set."""
        while True:
            if self._ready_at is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready.wait(), 1.0)
                if ready.is_set():
                    self._ready_at = time.perf_counter()
            else:
                await asyncio.sleep(1.0)
            state: protocol.AgentState = "ready" if self._ready_at else "loading"
            await socket.send(protocol.encode(self._status(state)))

    async def _read(self, socket: ClientConnection) -> None:
        async for frame in socket:
            message = protocol.decode_control_plane_message(frame)
            if isinstance(message, protocol.Job):
                if self.arrived == 0 and self._ready_at is not None:
                    waited = time.perf_counter() - self._ready_at
                    print(f"first_job_after_ready {waited:.6f}", flush=True)
                self.arrived += 1
                wanted = DEFAULT_TOKENS
                if isinstance(message.request, protocol.GenerationRequest):
                    wanted = message.request.sampling.max_tokens or DEFAULT_TOKENS
                self._running[message.job_id] = [0, wanted, self.arrived]
                self._work.set()
            elif isinstance(message, protocol.Cancel) and message.job_id in self._running:
                del self._running[message.job_id]
                await socket.send(protocol.encode(_done(message.job_id, 0, "cancelled")))

    async def _decode(self, socket: ClientConnection) -> None:
        while True:
            await self._work.wait()
            if self._ready_at is None:
                await asyncio.sleep(0.01)
                continue
            await self._step(socket)
            await asyncio.sleep(0)  # let the reader take new jobs between steps
            if not self._running:
                self._work.clear()

    async def _step(self, socket: ClientConnection) -> None:
        """One decode step: a token for every running job, then ``Done`` for the finished."""
        pieces = []
        for job_id, progress in self._running.items():
            text = f"#{progress[2]} " if progress[0] == 0 else TOKEN_TEXT
            progress[0] += 1
            pieces.append(protocol.Token(job_id=job_id, text=text))
        if self.batch and len(pieces) > 1:
            await socket.send(protocol.encode(protocol.Tokens(pieces=tuple(pieces))))
        else:
            for piece in pieces:
                await socket.send(protocol.encode(piece))
        for job_id, progress in list(self._running.items()):
            if progress[0] >= progress[1]:
                del self._running[job_id]
                await socket.send(protocol.encode(_done(job_id, progress[0], "length")))


def _done(job_id: str, tokens: int, reason: protocol.FinishReason) -> protocol.Done:
    return protocol.Done(
        job_id=job_id,
        finish_reason=reason,
        usage=protocol.Usage(prompt_tokens=8, completion_tokens=tokens),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--control-plane", required=True, help="its management address")
    parser.add_argument("--token", default="")
    parser.add_argument("--pool", default="bench")
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--agents", type=int, default=1, help="connections, one per agent")
    parser.add_argument("--frames", choices=("each", "batch"), default="batch")
    parser.add_argument("--hold", action="store_true", help="loading until SIGUSR1")
    args = parser.parse_args()
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, ready.set)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if not args.hold:
        ready.set()
    url = socket_url(args.control_plane)
    agents = [
        FakeAgent(url, args.token, f"fake-{n}", args.pool, args.slots, batch=args.frames == "batch")
        for n in range(args.agents)
    ]
    runs = [asyncio.create_task(agent.run(ready)) for agent in agents]
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*runs, stopping], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopping:
            task.result()  # a connection that ended on its own is a failure to report


if __name__ == "__main__":
    asyncio.run(main())
