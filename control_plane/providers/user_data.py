"""The boot script an EC2 instance runs to start its agent.

One template serves Terraform and this code: ``infra/templates/agent-user-data.sh.tftpl`` must
equal ``USER_DATA_TEMPLATE`` (a test holds them together). Only Terraform's plain
interpolation is used: ``${name}`` is a template variable and ``$${`` a literal ``${``; a bare
``$name`` or ``$(…)`` is shell and passes through both renderers untouched.

The script writes the agent's settings to an environment file (``PADDLER_*`` lines, read by the
VM stand-in in the LocalStack tests as well) and starts the agent as a systemd unit, so the
boot finishes while the agent keeps running and is restarted if it dies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

ENV_FILE = "/etc/paddler/agent.env"

USER_DATA_TEMPLATE = r"""#!/bin/bash
# Paddler agent boot script, rendered by Terraform (templatefile) and by the control plane's
# ec2 provider (control_plane/providers/user_data.py). It installs nothing the image already has.
set -euo pipefail

imds=http://169.254.169.254/latest
imds_token="$(curl -sS -X PUT "$imds/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')"
instance_id="$(curl -sS -H "X-aws-ec2-metadata-token: $imds_token" "$imds/meta-data/instance-id")"

if ! command -v paddler >/dev/null 2>&1; then
    python3 -m venv /opt/paddler
    /opt/paddler/bin/pip install --quiet '${paddler_package}'
    ln -sf /opt/paddler/bin/paddler /usr/local/bin/paddler
fi

install -d -m 0700 /etc/paddler
umask 077
cat >/etc/paddler/agent.env <<'PADDLER_ENV'
PADDLER_CONTROL_PLANE=${control_plane_url}
PADDLER_TOKEN=${agent_token}
PADDLER_POOL=${pool}
PADDLER_MODEL=${model}
PADDLER_SLOTS=${slots}
PADDLER_ENV
echo "PADDLER_INSTANCE_ID=$instance_id" >>/etc/paddler/agent.env
echo "PADDLER_NAME=$instance_id" >>/etc/paddler/agent.env

systemd-run --unit=paddler-agent --property=Restart=always \
    --property=EnvironmentFile=/etc/paddler/agent.env \
    "$(command -v paddler)" agent
"""

TEMPLATE_VARIABLES = (
    "paddler_package",
    "control_plane_url",
    "agent_token",
    "pool",
    "model",
    "slots",
)

_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_LINE = re.compile(r"^(PADDLER_[A-Z_]+)=(.*)$")


def render(template: str, variables: Mapping[str, object]) -> str:
    """Substitute ``${name}`` like Terraform's templatefile; ``$${`` becomes ``${``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "${"
        if name not in variables:
            raise KeyError(f"user data template variable {name!r} has no value")
        value = str(variables[name])
        if "\n" in value or "\r" in value:
            raise ValueError(f"user data variable {name!r} cannot contain a line break")
        return value

    return _PLACEHOLDER.sub(substitute, template)


def render_agent_user_data(
    *,
    control_plane_url: str,
    agent_token: str,
    pool: str,
    model: str,
    slots: int,
    paddler_package: str = "paddler",
) -> str:
    return render(
        USER_DATA_TEMPLATE,
        {
            "paddler_package": paddler_package,
            "control_plane_url": control_plane_url,
            "agent_token": agent_token,
            "pool": pool,
            "model": model,
            "slots": slots,
        },
    )


def agent_environment(user_data: str) -> dict[str, str]:
    """The ``PADDLER_*`` settings the rendered script writes to its environment file."""
    environment: dict[str, str] = {}
    for line in user_data.splitlines():
        match = _ENV_LINE.match(line)
        if match:
            environment[match.group(1)] = match.group(2)
    return environment
