"""What an EC2 error says about an instance: gone, or nothing at all.

Only ``InvalidInstanceID.NotFound`` means an instance is gone. Throttling
(``RequestLimitExceeded``), outages, network errors and timeouts (botocore's own errors, below
the API) leave its state unknown: whoever asked keeps what it knew and asks again later, so a
throttled DescribeInstances never reads as "every instance terminated".
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from control_plane.providers.base import ProviderError

NOT_FOUND = "InvalidInstanceID.NotFound"


class InstancesNotFound(ProviderError):
    """EC2 says an instance asked about does not exist: it is gone for good."""


def error_code(error: ClientError | BotoCoreError) -> str:
    """AWS's error code (``RequestLimitExceeded``…); empty for errors below the API (network,
    credentials, timeouts), which never tell anything about an instance."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def means_gone(error: ClientError | BotoCoreError) -> bool:
    """Whether the error says the instance is gone. Only ``InvalidInstanceID.NotFound`` does;
    throttling and every other failure leave its state unknown."""
    return error_code(error) == NOT_FOUND
