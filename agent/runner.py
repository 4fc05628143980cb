"""An agent's life: dial the control plane, announce slots, run the jobs it is given, redial."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import pydantic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agent.backoff import Backoff
from agent.engine.embedding_service import EmbeddingService
from agent.engine.engine import Engine, EngineError
from agent.model_sources import DownloadProgress, ModelSourceError, ProgressCallback
from agent.model_swap import (
    ModelPlan,
    ResolveModel,
    build_engine,
    rebuild_embeddings,
    resolve_locally,
)
from paddler import __version__, protocol
from paddler.logs import current_request_id

logger = logging.getLogger("paddler.agent")

WELCOME_TIMEOUT_SECONDS = 10.0
GOODBYE_TIMEOUT_SECONDS = 5.0
LOGGED_PROGRESS_STEPS = 10  # log a download's progress every 10%

FetchModel = Callable[[ProgressCallback], Awaitable[object]]


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
    ) -> None:
        """``fetch_model`` puts the model file where ``engine`` will load it from (a download,
        reporting its progress), while the agent is already connected and ``loading``.
        ``resolve_model`` fetches the models a pool's desired state names."""
        self.engine = engine
        self.model_source = model_source or str(engine.model_path)
        self.fetch_model = fetch_model
        self.resolve_model = resolve_model or resolve_locally
        self.applied_version = 0  # the pool's desired-state version this agent runs
        self._startup_plan = ModelPlan.of_engine(engine, self.model_source)
        self._plan = self._startup_plan
        self._loader: asyncio.Task[None] | None = None
        self._swap: asyncio.Task[None] | None = None
        self._target_version = 0
        self.download_progress: float | None = None
        self.url = socket_url(control_plane)
        self.token = token
        self.name = name
        self.pool = pool
        self.instance_id = instance_id
        self.shutdown_grace = shutdown_grace
        self.embeddings = embeddings
        self.agent_id = uuid.uuid4().hex
        self.state: protocol.AgentState = "loading"
        self.issues: tuple[str, ...] = ()
        self._backoff = Backoff(initial=0.2, maximum=reconnect_max_delay)
        self._outbox: asyncio.Queue[protocol.Message] | None = None
        self._jobs: dict[str, tuple[asyncio.Task[None], threading.Event]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain: finish running jobs within the grace period."""
        loader = self._loader = asyncio.create_task(self._load())
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
            loader.cancel()
            if self._swap is not None:
                self._swap.cancel()
            await self._stop_all_jobs()
            if self.embeddings is not None:
                self.embeddings.close()

    async def _drain(self) -> None:
        """Take no more work and give running jobs ``shutdown_grace`` seconds to finish."""
        self._set_state("draining")
        running = [task for task, _ in self._jobs.values()]
        if running:
            logger.info(
                "shutting down: waiting up to %.0fs for %d job(s)",
                self.shutdown_grace,
                len(running),
            )
            await asyncio.wait(running, timeout=self.shutdown_grace)
        await self._stop_all_jobs()
        if self._outbox is not None:
            self._outbox.put_nowait(protocol.Goodbye(reason="agent shutting down"))

    async def _load(self) -> None:
        if self.fetch_model is not None:
            try:
                await self.fetch_model(self._on_download_progress)
            except Exception as error:
                unexpected = not isinstance(error, ModelSourceError)
                logger.error("could not fetch the model: %s", error, exc_info=unexpected)
                self._set_state("error", (f"model could not be fetched: {error}",))
                return
        try:
            await self.engine.load()
            if self.embeddings is not None:
                await self.embeddings.load()
        except Exception as error:
            logger.exception("could not load the model")
            self._set_state("error", (f"model failed to load: {error}",))
            return
        logger.info(
            "model %s loaded with %d slots", self.engine.model_name, self.engine.slots_total
        )
        self._set_state("ready")

    def _on_download_progress(self, progress: DownloadProgress) -> None:
        fraction = progress.fraction
        previous = self.download_progress
        self.download_progress = fraction
        if fraction is not None and (
            previous is None
            or int(fraction * LOGGED_PROGRESS_STEPS) > int(previous * LOGGED_PROGRESS_STEPS)
        ):
            logger.info("model download %.0f%% (%d bytes)", fraction * 100, progress.done_bytes)
        if self._outbox is not None:
            self._outbox.put_nowait(self._status())

    def _set_state(self, state: protocol.AgentState, issues: tuple[str, ...] = ()) -> None:
        self.state = state
        self.issues = issues
        if self._outbox is not None:
            self._outbox.put_nowait(self._status())

    def _status(self) -> protocol.Status:
        return protocol.Status(
            state=self.state,
            slots_busy=self.engine.slots_busy,
            slots_total=self.engine.slots_total,
            model=self.engine.model_name,
            download_progress=self.download_progress,
            issues=self.issues + self.engine.issues,
            engine=self.engine.stats(),
            applied_version=self.applied_version,
            cpu=self.engine.cpu_path,
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
                max_size=None,
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
            await self._stop_all_jobs()

    async def _session(self, socket: ClientConnection) -> None:
        hello = protocol.Hello(
            agent_id=self.agent_id,
            name=self.name,
            version=__version__,
            slots=self.engine.slots_total,
            model=self.engine.model_name,
            model_source=self.model_source,
            pool=self.pool,
            instance_id=self.instance_id,
            embeddings=self.embeddings is not None,
            applied_version=self.applied_version,
            cpu=self.engine.cpu_path,
        )
        await socket.send(protocol.encode(hello))
        welcome = protocol.decode_control_plane_message(
            await asyncio.wait_for(socket.recv(), WELCOME_TIMEOUT_SECONDS)
        )
        if not isinstance(welcome, protocol.Welcome):
            raise InvalidHandshake(f"expected welcome, got {welcome.type}")
        outbox: asyncio.Queue[protocol.Message] = asyncio.Queue()
        self._outbox = outbox
        outbox.put_nowait(self._status())
        tasks = [
            asyncio.create_task(self._write(socket, outbox)),
            asyncio.create_task(self._heartbeat(outbox, welcome.heartbeat_seconds)),
        ]
        try:
            async for frame in socket:
                try:
                    message = protocol.decode_control_plane_message(frame)
                except pydantic.ValidationError as error:
                    logger.warning("ignored an invalid message from the control plane: %s", error)
                    continue
                self._handle(message, outbox)
        finally:
            for task in tasks:
                task.cancel()

    def _handle(
        self, message: protocol.ControlPlaneMessage, outbox: asyncio.Queue[protocol.Message]
    ) -> None:
        match message:
            case protocol.Job():
                stop = threading.Event()
                task = asyncio.create_task(self._run_job(message, outbox, stop))
                self._jobs[message.job_id] = (task, stop)
            case protocol.Cancel():
                running = self._jobs.get(message.job_id)
                if running is not None:
                    logger.info("job %s cancelled by the control plane", message.job_id)
                    running[1].set()
            case protocol.Drain():
                logger.info("draining: finishing %d job(s), taking no more", len(self._jobs))
                self._set_state("draining")
            case protocol.DesiredState():
                if message.version > max(self.applied_version, self._target_version):
                    self._target_version = message.version
                    self._swap = asyncio.create_task(self._apply(message, self._swap))
            case protocol.Welcome():
                logger.warning("ignored a second welcome")

    async def _apply(
        self, desired: protocol.DesiredState, previous: asyncio.Task[None] | None
    ) -> None:
        """Adopt the pool's desired state, or drain, unload, fetch, load and report; a model
        that cannot be loaded leaves the agent in ``error`` until a later one loads."""
        await asyncio.gather(
            *(task for task in (previous, self._loader) if task), return_exceptions=True
        )
        plan = self._startup_plan.desired(desired)
        if plan == self._plan and self.state == "ready":
            logger.info("desired state v%d changes nothing here: adopted", desired.version)
            self.applied_version = desired.version
            self._set_state("ready")
            return
        logger.info(
            "desired state v%d: draining, then loading %s", desired.version, plan.model_source
        )
        self._set_state("draining")
        while self._jobs:
            await asyncio.wait([task for task, _ in self._jobs.values()])
        self.engine.close()
        if self.embeddings is not None:
            self.embeddings.close()
        self.download_progress = None
        self._set_state("loading")
        try:
            path = await self.resolve_model(plan.model_source).fetch(self._on_download_progress)
            engine = build_engine(plan, path, like=self.engine)
            await engine.load()
            embeddings = rebuild_embeddings(self.embeddings, path)
            if embeddings is not None:
                await embeddings.load()
        except Exception as error:
            logger.error("desired state v%d failed: %s", desired.version, error, exc_info=True)
            issue = f"desired state v{desired.version} could not be applied: {error}"
            self._set_state("error", (issue,))
            return
        self.engine, self.embeddings, self._plan = engine, embeddings, plan
        self.model_source = plan.model_source
        self.applied_version = desired.version
        logger.info("desired state v%d applied: serving %s", desired.version, engine.model_name)
        self._set_state("ready")

    async def _run_job(
        self, job: protocol.Job, outbox: asyncio.Queue[protocol.Message], stop: threading.Event
    ) -> None:
        def emit(text: str) -> None:
            outbox.put_nowait(protocol.Token(job_id=job.job_id, text=text))

        current_request_id.set(job.request_id)  # this task's log lines carry it
        logger.info("running job %s (%s)", job.job_id, job.request.kind)
        try:
            if isinstance(job.request, protocol.EmbeddingRequest):
                outbox.put_nowait(await self._embed(job.job_id, job.request))
                return
            result = await self.engine.generate(job.request, emit, stop)
            logger.info(
                "job %s done: %s, %d tokens",
                job.job_id,
                result.finish_reason,
                result.usage.completion_tokens,
            )
            outbox.put_nowait(
                protocol.Done(
                    job_id=job.job_id,
                    finish_reason=result.finish_reason,
                    usage=result.usage,
                    seconds_to_first_token=result.seconds_to_first_token,
                    seconds_total=result.seconds_total,
                )
            )
        except EngineError as error:
            outbox.put_nowait(
                protocol.JobError(job_id=job.job_id, code=error.code, message=error.message)
            )
        except Exception as error:
            logger.exception("job %s failed", job.job_id)
            outbox.put_nowait(
                protocol.JobError(
                    job_id=job.job_id, code=protocol.ENGINE_FAILURE, message=str(error)
                )
            )
        finally:
            self._jobs.pop(job.job_id, None)

    async def _embed(self, job_id: str, request: protocol.EmbeddingRequest) -> protocol.Embeddings:
        if self.embeddings is None:
            raise EngineError(protocol.EMBEDDINGS_DISABLED, "this agent does not serve embeddings")
        outcome = await self.embeddings.embed(request.inputs)
        vectors = tuple(tuple(vector) for vector in outcome.vectors)
        return protocol.Embeddings(
            job_id=job_id, vectors=vectors, prompt_tokens=outcome.prompt_tokens
        )

    async def _stop_all_jobs(self) -> None:
        """Jobs of a lost connection have nobody to report to: stop them and free their slots."""
        running = list(self._jobs.values())
        for _, stop in running:
            stop.set()
        if running:
            await asyncio.gather(*(task for task, _ in running), return_exceptions=True)

    async def _write(
        self, socket: ClientConnection, outbox: asyncio.Queue[protocol.Message]
    ) -> None:
        while True:
            message = await outbox.get()
            await socket.send(protocol.encode(message))

    async def _heartbeat(self, outbox: asyncio.Queue[protocol.Message], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            outbox.put_nowait(self._status())
