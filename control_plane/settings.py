"""Everything an operator can set on the control plane."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from control_plane.autoscaler.settings import AutoscalerSettings
from paddler.settings import require_log_format, require_log_level, require_positive, setting


@dataclass(frozen=True)
class ControlPlaneSettings(AutoscalerSettings):
    inference_addr: str = setting(
        "127.0.0.1:8061", "host:port of the public OpenAI-compatible inference API"
    )
    management_addr: str = setting(
        "127.0.0.1:8060", "host:port of the internal address: agent socket and management API"
    )
    state_dir: Path = setting(Path(".paddler"), "directory for the default SQLite database")
    database_url: str = setting(
        "", "SQLAlchemy async URL of the state database (default: SQLite in --state-dir)"
    )
    max_buffered_requests: int = setting(
        100, "requests each model may hold waiting for a free slot before answering 503"
    )
    buffer_timeout: float = setting(
        30.0, "seconds a request may wait for a free slot before answering 504"
    )
    api_keys: str = setting(
        "", "comma-separated keys clients must send as Bearer tokens (empty: no client auth)"
    )
    agent_token: str = setting(
        "", "secret agents must present (empty: any agent may join; not for production)"
    )
    agent_timeout: float = setting(
        5.0, "seconds of silence after which an agent is considered lost"
    )
    max_dispatch_attempts: int = setting(
        3, "agents a request may be sent to before it fails, when agents vanish under it"
    )
    queue_report_interval: float = setting(
        3.0, "seconds between ': queued' comments sent to a waiting stream"
    )
    max_request_bytes: int = setting(
        4 * 1024 * 1024, "largest request body accepted by the inference API (413 above)"
    )
    admin_token: str = setting(
        "",
        "secret operators present to the management API and dashboard "
        "(empty: generated once and kept in --state-dir/admin-token)",
    )
    log_level: str = setting("info", "debug, info, warning or error")
    log_format: str = setting("text", "text, or json for one JSON object per log line")

    def __post_init__(self) -> None:
        require_positive(
            self,
            "max_buffered_requests",
            "buffer_timeout",
            "agent_timeout",
            "max_dispatch_attempts",
            "queue_report_interval",
            "max_request_bytes",
        )
        require_log_level(self.log_level)
        self.check_autoscaler()
        require_log_format(self.log_format)

    @property
    def resolved_database_url(self) -> str:
        from control_plane.db.engine import default_database_url

        return self.database_url or default_database_url(self.state_dir)
