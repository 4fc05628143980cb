"""The autoscaler's settings, part of the control plane's (``ControlPlaneSettings`` inherits
them, so each is a flag, a ``PADDLER_*`` variable and a TOML key like every other setting).

``provider = "none"`` (the default of ``paddler control-plane``) runs no autoscaler: agents
join by themselves. ``local`` starts agents as child processes on this host (``paddler up``
uses it with ``min_agents = 1``); ``ec2`` starts EC2 instances through boto3.
"""

from __future__ import annotations

from dataclasses import dataclass

from paddler.settings import SettingsError, require_positive, setting

PROVIDERS = ("none", "local", "ec2")


@dataclass(frozen=True)
class AutoscalerSettings:
    provider: str = setting("none", "who starts agents on demand: none, local or ec2")
    agent_model: str = setting(
        "", "model source launched agents load: path, URL or s3:// (default: bundled SmolLM2)"
    )
    agent_pool: str = setting(
        "", "pool (model name) the autoscaler serves (default: the model file's stem)"
    )
    agent_slots: int = setting(4, "slots of each launched agent")
    agent_args: str = setting(
        "", "extra `paddler agent` flags for local agents, e.g. '--context-size 1024'"
    )
    agent_control_plane_url: str = setting(
        "", "address launched agents dial (default: http:// plus --management-addr)"
    )
    min_agents: int = setting(0, "agents kept running when idle")
    max_agents: int = setting(1, "most agents (booting, ready or draining) at once")
    scale_down_after: float = setting(
        300.0, "seconds an agent may stay idle before it is drained and terminated"
    )
    boot_timeout: float = setting(
        600.0, "seconds a launched agent may take to load its model before it is replaced"
    )
    max_boot_attempts: int = setting(
        3, "failed boots in a row after which the pool answers 503 capacity_unavailable"
    )
    failing_retry_after: float = setting(
        300.0, "seconds between probe launches while the pool is failing"
    )
    drain_timeout: float = setting(
        120.0, "seconds a draining agent may finish its jobs before it is terminated anyway"
    )
    cluster: str = setting("paddler", "cluster name: tags instances, so clusters stay apart")
    ec2_region: str = setting("us-east-1", "AWS region of the ec2 provider")
    ec2_endpoint_url: str = setting("", "EC2 endpoint (e.g. LocalStack's http://127.0.0.1:4566)")
    ec2_launch_template: str = setting(
        "paddler-agent", "launch template name (empty: launch from --ec2-image-id)"
    )
    ec2_image_id: str = setting("", "AMI to launch (with --ec2-instance-type)")
    ec2_instance_type: str = setting("", "instance type, e.g. g5.xlarge")
    ec2_subnet_id: str = setting("", "subnet to launch into")
    ec2_security_groups: str = setting("", "comma-separated security group ids")
    ec2_instance_profile: str = setting("", "instance profile name or ARN")
    ec2_spot: bool = setting(False, "launch spot instances, on demand when spot is refused")

    def check_autoscaler(self) -> None:
        """Refuse settings the autoscaler cannot work with; called by ``__post_init__``."""
        if self.provider not in PROVIDERS:
            raise SettingsError(
                f"--provider must be one of {', '.join(PROVIDERS)}, got {self.provider!r}"
            )
        require_positive(
            self,
            "agent_slots",
            "max_agents",
            "scale_down_after",
            "boot_timeout",
            "max_boot_attempts",
            "failing_retry_after",
            "drain_timeout",
        )
        if not 0 <= self.min_agents <= self.max_agents:
            raise SettingsError(
                f"--min-agents must be between 0 and --max-agents ({self.max_agents}), "
                f"got {self.min_agents}"
            )
        if not self.cluster:
            raise SettingsError("--cluster cannot be empty")
        image = self.ec2_image_id and self.ec2_instance_type
        if self.provider == "ec2" and not (self.ec2_launch_template or image):
            raise SettingsError(
                "the ec2 provider needs --ec2-launch-template, or --ec2-image-id and "
                "--ec2-instance-type"
            )
