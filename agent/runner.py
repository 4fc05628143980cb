"""An agent's life: dial the control plane, announce slots, run the jobs it is given, redial.

The jobs are :mod:`agent.jobs`; the model they run on, its loading and swapping,
:mod:`agent.served_model`. Here are the connection, its messages and the agent's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from urllib.parse import urlsplit, urlunsplit

import pydantic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agent.backoff import Backoff
from agent.engine.embedding_service import EmbeddingService
from agent.engine.engine import Engine
from agent.jobs import Jobs, Outbox
from agent.model_swap import ResolveModel
from agent.served_model import FetchModel, ServedModel
from agent.token_batches import token_batches
from paddler import __version__, protocol

logger = logging.getLogger("paddler.agent")

WELCOME_TIMEOUT_SECONDS = 10.0
GOODBYE_TIMEOUT_SECONDS = 5.0


def socket_url(control_plane: str) -> str:
    """Turn the control plane's management address into the agent socket's ws(s):// URL."""
    if "://" not in control_plane:
        control_plane = "http://" + control_plane
    parts = urlsplit(control_plane)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s):// or ws(s):// address: {control_plane!r}")
    path = parts.path if parts.path not in ("", "/") else protocol.AGENT_SOCKET_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class AgentRunner:
    def __init__(
        self,
        engine: Engine,
        *,
        control_plane: str,
        token: str,
        name: str,
        pool: str,
        instance_id: str | None = None,
        reconnect_max_delay: float = 5.0,
        shutdown_grace: float = 30.0,
        embeddings: EmbeddingService | None = None,
        model_source: str | None = None,
        fetch_model: FetchModel | None = None,
        resolve_model: ResolveModel | None = None,
        compression: bool = False,
    ) -> None:
        """``fetch_model`` puts the model file where ``engine`` will load it from (a download,
        reporting its progress), while the agent is already connected and ``loading``.
        ``resolve_model`` fetches the models a pool's desired state names."""
        self.served = ServedModel(
            engine,
            self,
            embeddings=embeddings,
            model_source=model_source,
            fetch_model=fetch_model,
            resolve_model=resolve_model,
        )
        self.url = socket_url(control_plane)
        self.token = token
        self.name = name
        self.pool = pool
        self.instance_id = instance_id
        self.shutdown_grace = shutdown_grace
        self.compression = compression  # permessage-deflate on the socket
        self.agent_id = uuid.uuid4().hex
        self.state: protocol.AgentState = "loading"
        self.issues: tuple[str, ...] = ()
        self._backoff = Backoff(initial=0.2, maximum=reconnect_max_delay)
        self._outbox: Outbox | None = None
        self._jobs = Jobs(self.served)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain: finish running jobs within the grace period."""
        self.served.start_loading()
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                connection = asyncio.create_task(self._connect_once())
                await asyncio.wait({connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    await self._drain()
                    # the control plane closes the socket once it has read our last messages
                    await asyncio.wait({connection}, timeout=GOODBYE_TIMEOUT_SECONDS)
                    connection.cancel()
                    await asyncio.gather(connection, return_exceptions=True)
                    logger.info("shut down")
                    break
                delay = self._backoff.next_delay()
                logger.info("reconnecting in %.1fs", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            stopping.cancel()
            self.served.cancel()
            await self._jobs.stop_all()
            if self.served.embeddings is not None:
                self.served.embeddings.close()

    async def _drain(self) -> None:
        """Take no more work and give running jobs ``shutdown_grace`` seconds to finish."""
        self.set_state("draining")
        running = self._jobs.tasks()
        if running:
            logger.info(
                "shutting down: waiting up to %.0fs for %d job(s)",
                self.shutdown_grace,
                len(running),
            )
            await asyncio.wait(running, timeout=self.shutdown_grace)
        await self._jobs.stop_all()
        if self._outbox is not None:
            self._outbox.put_nowait(protocol.Goodbye(reason="agent shutting down"))

    def set_state(self, state: protocol.AgentState, issues: tuple[str, ...] = ()) -> None:
        self.state = state
        self.issues = issues
        self.report_status()

    def report_status(self) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(self._status())

    async def jobs_finished(self) -> None:
        await self._jobs.finished()

    def _status(self) -> protocol.Status:
        engine = self.served.engine
        return protocol.Status(
            state=self.state,
            slots_busy=engine.slots_busy,
            slots_total=engine.slots_total,
            model=engine.model_name,
            download_progress=self.served.download_progress,
            issues=self.issues + engine.issues,
            engine=engine.stats(),
            applied_version=self.served.applied_version,
            cpu=engine.cpu_path,
            prefixes=engine.slot_prefixes(),
        )

    async def _connect_once(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with connect(
                self.url,
                additional_headers=headers,
                open_timeout=5,
                ping_interval=2,
                ping_timeout=4,
                close_timeout=2,
                max_size=protocol.MAX_FRAME_BYTES,
                # token frames are small and many: deflating each costs more than it saves
                compression="deflate" if self.compression else None,
            ) as socket:
                logger.info("connected to %s", self.url)
                self._backoff.reset()
                await self._session(socket)
                logger.warning(
                    "the control plane closed the connection: %s %s",
                    socket.close_code,
                    socket.close_reason or "",
                )
        except InvalidStatus as error:
            status = error.response.status_code
            if status in (401, 403):
                logger.error("the control plane refused this agent's token (HTTP %d)", status)
            else:
                logger.warning("the control plane answered HTTP %d", status)
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as error:
            logger.warning("connection to %s failed or dropped: %s", self.url, error or type(error))
        finally:
            self._outbox = None
            await self._jobs.stop_all()

    async def _session(self, socket: ClientConnection) -> None:
        engine = self.served.engine
        hello = protocol.Hello(
            agent_id=self.agent_id,
            name=self.name,
            version=__version__,
            slots=engine.slots_total,
            model=engine.model_name,
            model_source=self.served.model_source,
            pool=self.pool,
            instance_id=self.instance_id,
            embeddings=self.served.embeddings is not None,
            applied_version=self.served.applied_version,
            cpu=engine.cpu_path,
        )
        await socket.send(protocol.encode(hello))
        welcome = protocol.decode_control_plane_message(
            await asyncio.wait_for(socket.recv(), WELCOME_TIMEOUT_SECONDS)
        )
        if not isinstance(welcome, protocol.Welcome):
            raise InvalidHandshake(f"expected welcome, got {welcome.type}")
        self._jobs.max_frame_bytes = welcome.max_frame_bytes
        outbox: Outbox = asyncio.Queue()
        self._outbox = outbox
        outbox.put_nowait(self._status())
        reader = asyncio.create_task(self._read(socket, outbox), name="reader")
        tasks = [
            reader,
            asyncio.create_task(self._write(socket, outbox), name="writer"),
            asyncio.create_task(self._heartbeat(outbox, welcome.heartbeat_seconds), name="beat"),
        ]
        try:
            # the connection lives as long as all three: a task that stops closes it
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            ended = next(task for task in tasks if task in done)
            error = ended.exception()
            if ended is reader or isinstance(error, ConnectionClosed):
                ended.result()
                return
            logger.error(
                "the connection's %s stopped; closing it", ended.get_name(), exc_info=error
            )
            await socket.close(1011, f"agent {ended.get_name()} failed")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, socket: ClientConnection, outbox: Outbox) -> None:
        async for frame in socket:
            try:
                message = protocol.decode_control_plane_message(frame)
            except pydantic.ValidationError as error:
                logger.warning("ignored an invalid message from the control plane: %s", error)
                continue
            self._handle(message, outbox)

    def _handle(self, message: protocol.ControlPlaneMessage, outbox: Outbox) -> None:
        match message:
            case protocol.Job():
                self._jobs.start(message, outbox)
            case protocol.Cancel():
                self._jobs.cancel(message.job_id)
            case protocol.Drain():
                logger.info("draining: finishing %d job(s), taking no more", len(self._jobs))
                self.set_state("draining")
            case protocol.DesiredState():
                self.served.offer(message)
            case protocol.Welcome():
                logger.warning("ignored a second welcome")

    async def _write(self, socket: ClientConnection, outbox: Outbox) -> None:
        """Send the outbox in order; the ``Token`` pieces that are in together (a decode step
        of every slot) go as one ``Tokens`` frame."""
        while True:
            messages = [await outbox.get()]
            while not outbox.empty():
                messages.append(outbox.get_nowait())
            for frame in token_batches(messages, self._jobs.max_frame_bytes):
                await socket.send(frame)

    async def _heartbeat(self, outbox: Outbox, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            outbox.put_nowait(self._status())
