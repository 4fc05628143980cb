"""API keys as tenants: who a request is from, whether its key's limits let it in now, and
what each key used (see admission.py)."""

from control_plane.tenancy.admission import Tenancy
from control_plane.tenancy.callers import ANONYMOUS, PRIORITIES, Caller
from control_plane.tenancy.directory import KeyDirectory
from control_plane.tenancy.estimates import estimate_prompt_tokens, estimated_cost
from control_plane.tenancy.observer import TenancyObserver
from control_plane.tenancy.secrets import new_secret, secret_digest, visible_prefix
from control_plane.tenancy.tickets import Outcome, Ticket

__all__ = [
    "ANONYMOUS",
    "PRIORITIES",
    "Caller",
    "KeyDirectory",
    "Outcome",
    "Tenancy",
    "TenancyObserver",
    "Ticket",
    "estimate_prompt_tokens",
    "estimated_cost",
    "new_secret",
    "secret_digest",
    "visible_prefix",
]
