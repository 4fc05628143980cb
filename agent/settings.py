"""Everything an operator can set on an agent."""

from __future__ import annotations

from dataclasses import dataclass

from paddler.settings import SettingsError, require_log_level, require_positive, setting


@dataclass(frozen=True)
class AgentSettings:
    control_plane: str = setting(
        "http://127.0.0.1:8060", "the control plane's management address (http(s):// or ws(s)://)"
    )
    token: str = setting("", "the control plane's agent token")
    model: str = setting("", "path to the GGUF model file to serve")
    pool: str = setting("", "pool (model name clients ask for); default: the model file's stem")
    slots: int = setting(4, "requests this agent serves at once")
    name: str = setting("", "name shown in the fleet (default: host name and process id)")
    context_size: int = setting(2048, "tokens of context per slot")
    threads: int = setting(0, "CPU threads per slot (0: cores divided by slots)")
    embeddings: bool = setting(
        False, "also serve /v1/embeddings (loads a second, embedding context of the model)"
    )
    instance_id: str = setting("", "cloud instance id, when a provider started this agent")
    reconnect_max_delay: float = setting(5.0, "longest pause between reconnection attempts")
    shutdown_grace: float = setting(
        30.0, "seconds running jobs may take to finish when the agent is asked to stop"
    )
    log_level: str = setting("info", "debug, info, warning or error")

    def __post_init__(self) -> None:
        require_positive(self, "slots", "context_size", "reconnect_max_delay")
        if self.threads < 0 or self.shutdown_grace < 0:
            raise SettingsError("threads and shutdown_grace cannot be negative")
        require_log_level(self.log_level)
