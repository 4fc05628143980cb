"""Providers start and stop the machines (or processes) that run agents: see ``base``."""

from control_plane.providers.base import (
    AgentSpec,
    InstanceRecord,
    InstanceState,
    InstanceStatus,
    Provider,
    ProviderError,
)

__all__ = [
    "AgentSpec",
    "InstanceRecord",
    "InstanceState",
    "InstanceStatus",
    "Provider",
    "ProviderError",
]
