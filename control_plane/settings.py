"""Everything an operator can set on the control plane."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from control_plane.addresses import split_address
from control_plane.autoscaler.settings import AutoscalerSettings
from paddler.protocol import MAX_FRAME_BYTES
from paddler.settings import (
    SettingsError,
    require_log_format,
    require_log_level,
    require_positive,
    setting,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    first_token_timeout: float = setting(
        120.0,
        "seconds an agent may take to send a request's first token (or its embeddings) before "
        "the request goes to another agent, or fails if it cannot",
    )
    stall_timeout: float = setting(
        60.0, "seconds an agent may go without sending a started request's next token (504)"
    )
    keepalive_interval: float = setting(
        5.0, "seconds of silence after which a stream waiting for a token gets a comment line"
    )
    api_keys: str = setting(
        "",
        "comma-separated bootstrap keys clients may send as Bearer tokens, without limits "
        "(keys with limits are made with 'paddler keys create'; no key at all: no client auth)",
    )
    key_sync_interval: float = setting(
        0.5,
        "seconds between syncs of API keys, usage and rate windows with the database "
        "(a revoked key stops working on every replica within about this long)",
    )
    agent_token: str = setting(
        "", "secret agents must present (empty: any agent may join; not for production)"
    )
    agent_timeout: float = setting(
        5.0, "seconds of silence after which an agent is considered lost"
    )
    agent_max_frame_bytes: int = setting(
        MAX_FRAME_BYTES,
        "largest websocket message to or from an agent (larger results come in several)",
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
    cors_origins: str = setting(
        "",
        "comma-separated origins whose pages may call the inference API from a browser "
        "('*': any; empty: only the dashboard's own)",
    )
    trusted_proxies: str = setting(
        "",
        "comma-separated addresses or networks of reverse proxies whose X-Forwarded-Proto "
        "is believed (empty: none)",
    )
    model_aliases: str = setting(
        "",
        "comma-separated alias=pool pairs: a request naming an alias is served by that pool "
        "('*=pool': any model name no pool or alias has)",
    )
    responses_retention: float = setting(
        30 * 24 * 3600.0,
        "seconds a stored /v1/responses response is kept for previous_response_id and GET",
    )
    log_level: str = setting("info", "debug, info, warning or error")
    log_format: str = setting("text", "text, or json for one JSON object per log line")

    def __post_init__(self) -> None:
        require_positive(
            self,
            "max_buffered_requests",
            "buffer_timeout",
            "first_token_timeout",
            "stall_timeout",
            "keepalive_interval",
            "agent_timeout",
            "max_dispatch_attempts",
            "queue_report_interval",
            "max_request_bytes",
            "agent_max_frame_bytes",
            "responses_retention",
            "key_sync_interval",
        )
        if self.agent_max_frame_bytes > MAX_FRAME_BYTES:
            raise SettingsError(f"--agent-max-frame-bytes may be at most {MAX_FRAME_BYTES}")
        require_log_level(self.log_level)
        self.check_autoscaler()
        require_log_format(self.log_format)
        _ = self.trusted_proxy_networks  # a bad --trusted-proxies is refused at start
        _ = self.model_alias_map

    @property
    def model_alias_map(self) -> dict[str, str]:
        """``--model-aliases`` as alias -> pool; the key ``*`` catches every other name."""
        aliases: dict[str, str] = {}
        for entry in (part.strip() for part in self.model_aliases.split(",")):
            if not entry:
                continue
            alias, equals, pool = (side.strip() for side in entry.partition("="))
            if not equals or not alias or not pool:
                raise SettingsError(f"--model-aliases: {entry!r} is not alias=pool")
            if alias in aliases:
                raise SettingsError(f"--model-aliases: {alias!r} is given twice")
            aliases[alias] = pool
        return aliases

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        networks = []
        for entry in (part.strip() for part in self.trusted_proxies.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as error:
                raise SettingsError(
                    f"--trusted-proxies: {entry!r} is not an IP address or network"
                ) from error
        return tuple(networks)

    @property
    def allowed_cors_origins(self) -> frozenset[str]:
        return frozenset(
            origin.strip().rstrip("/") for origin in self.cors_origins.split(",") if origin.strip()
        )

    def require_agent_token_off_loopback(self) -> None:
        """Agents receive prompts: a management address other hosts reach needs the token."""
        if self.agent_token or _is_loopback(split_address(self.management_addr)[0]):
            return
        raise SettingsError(
            f"--management-addr {self.management_addr} is reachable from other hosts, so any "
            "of them could join as an agent and receive prompts: set --agent-token "
            "(PADDLER_AGENT_TOKEN), or listen on 127.0.0.1"
        )

    @property
    def resolved_database_url(self) -> str:
        from control_plane.db.engine import default_database_url

        return self.database_url or default_database_url(self.state_dir)


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (a listening host, IPv6 in brackets) is reachable from this host only.
    Host names other than ``localhost`` are not trusted to stay local."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
