"""Everything an operator can set on an agent."""

from __future__ import annotations

from dataclasses import dataclass

from agent.engine.cpu_path import CPU_REPACK_CHOICES
from paddler.protocol import CpuRepack
from paddler.settings import (
    SettingsError,
    require_choice,
    require_log_format,
    require_log_level,
    require_positive,
    setting,
)


@dataclass(frozen=True)
class AgentSettings:
    control_plane: str = setting(
        "http://127.0.0.1:8060", "the control plane's management address (http(s):// or ws(s)://)"
    )
    token: str = setting("", "the control plane's agent token")
    model: str = setting(
        "", "GGUF model to serve: a file path, an http(s):// URL or s3://bucket/key"
    )
    model_sha256: str = setting(
        "", "sha256 the model must have (a URL may end in #sha256=<hex> instead)"
    )
    model_cache: str = setting(
        "", "directory downloaded models are kept in (default: ~/.cache/paddler/models)"
    )
    s3_endpoint_url: str = setting(
        "", "S3 endpoint for s3:// models (default: AWS_ENDPOINT_URL or AWS's own)"
    )
    s3_region: str = setting("", "S3 region for s3:// models (default: AWS_REGION and co.)")
    max_model_bytes: int = setting(
        200 << 30, "largest model download accepted, in bytes (a larger one fails and is deleted)"
    )
    download_stall_timeout: float = setting(
        30.0, "seconds an http(s) model download may receive nothing before the attempt fails"
    )
    pool: str = setting("", "pool (model name clients ask for); default: the model file's stem")
    slots: int = setting(4, "requests this agent serves at once")
    name: str = setting("", "name shown in the fleet (default: host name and process id)")
    context_size: int = setting(2048, "tokens of context per slot (prompt plus completion)")
    threads: int = setting(0, "CPU threads the engine computes with (0: all cores)")
    batch_size: int = setting(
        512, "tokens decoded per step at most, all slots together (prompt chunks included)"
    )
    kv_size: int = setting(
        0,
        "KV cache cells shared by all slots (0: each slot owns context_size cells); "
        "less overcommits memory, and a request that finds it full fails with kv_cache_full",
    )
    cpu_repack: CpuRepack = setting(
        "auto",
        "auto, on or off: may llama.cpp put weights in extra CPU buffer types (AMX, repacked "
        "layouts); auto: off on CPUs with AMX, where decoding through them crashes, else on",
    )
    prompt_cache: bool = setting(
        True, "reuse a slot's KV cache for a prompt that starts like the slot's previous one"
    )
    chat_template: str = setting(
        "", "file with a Jinja chat template to use instead of the model's own"
    )
    embeddings: bool = setting(
        False, "also serve /v1/embeddings (loads a second, embedding context of the model)"
    )
    instance_id: str = setting("", "cloud instance id, when a provider started this agent")
    reconnect_max_delay: float = setting(5.0, "longest pause between reconnection attempts")
    shutdown_grace: float = setting(
        30.0, "seconds running jobs may take to finish when the agent is asked to stop"
    )
    log_level: str = setting("info", "debug, info, warning or error")
    log_format: str = setting("text", "text, or json for one JSON object per log line")

    def __post_init__(self) -> None:
        require_positive(
            self,
            "slots",
            "context_size",
            "batch_size",
            "reconnect_max_delay",
            "max_model_bytes",
            "download_stall_timeout",
        )
        if self.threads < 0 or self.shutdown_grace < 0 or self.kv_size < 0:
            raise SettingsError("threads, kv_size and shutdown_grace cannot be negative")
        require_choice("cpu_repack", self.cpu_repack, CPU_REPACK_CHOICES)
        require_log_level(self.log_level)
        require_log_format(self.log_format)
