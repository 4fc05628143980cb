"""Turn the autoscaler settings into a provider, a policy and the agent spec it launches."""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from control_plane.addresses import dialable
from control_plane.autoscaler.decisions import ScalingPolicy
from control_plane.autoscaler.settings import AutoscalerSettings
from control_plane.providers.base import AgentSpec, Provider
from control_plane.providers.ec2 import EC2Provider, EC2Settings
from control_plane.providers.local import LocalProvider, LocalSettings
from paddler.bundled import bundled_model_path
from paddler.settings import SettingsError


def build_provider(settings: AutoscalerSettings, state_dir: Path) -> Provider | None:
    """The configured provider; None when the autoscaler is off (``--provider none``)."""
    if settings.provider == "local":
        return LocalProvider(
            LocalSettings(
                state_dir=state_dir,
                cluster=settings.cluster,
                extra_args=tuple(shlex.split(settings.agent_args)),
            )
        )
    if settings.provider == "ec2":
        try:
            ec2 = EC2Settings(
                cluster=settings.cluster,
                region=settings.ec2_region,
                endpoint_url=settings.ec2_endpoint_url or None,
                launch_template=settings.ec2_launch_template or None,
                image_id=settings.ec2_image_id or None,
                instance_type=settings.ec2_instance_type or None,
                subnet_id=settings.ec2_subnet_id or None,
                security_group_ids=tuple(
                    group.strip() for group in settings.ec2_security_groups.split(",") if group
                ),
                instance_profile=settings.ec2_instance_profile or None,
                spot=settings.ec2_spot,
            )
        except ValueError as error:
            raise SettingsError(f"ec2 provider: {error}") from error
        return EC2Provider(ec2)
    return None


def build_policy(settings: AutoscalerSettings) -> ScalingPolicy:
    return ScalingPolicy(
        slots_per_agent=settings.agent_slots,
        min_agents=settings.min_agents,
        max_agents=settings.max_agents,
        scale_down_after=settings.scale_down_after,
        boot_timeout=settings.boot_timeout,
        max_boot_failures=settings.max_boot_attempts,
        failing_retry_after=settings.failing_retry_after,
    )


def agent_pool(settings: AutoscalerSettings) -> str:
    """The pool launched agents join: ``--agent-pool``, else their model file's stem."""
    model = settings.agent_model or str(bundled_model_path())
    return settings.agent_pool or PurePosixPath(model.split("?", 1)[0]).stem


def build_spec(settings: AutoscalerSettings, management_addr: str, agent_token: str) -> AgentSpec:
    """What launched agents run. The model defaults to the bundled one, by its absolute path
    (so the pool's model source matches what the agents report)."""
    model = settings.agent_model or str(bundled_model_path())
    pool = agent_pool(settings)
    url = settings.agent_control_plane_url or f"http://{dialable(management_addr)}"
    try:
        return AgentSpec(
            pool=pool,
            control_plane_url=url,
            agent_token=agent_token,
            model=model,
            slots=settings.agent_slots,
        )
    except ValueError as error:
        raise SettingsError(f"autoscaler: {error}") from error
