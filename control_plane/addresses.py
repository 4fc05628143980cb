"""``host:port`` addresses the control plane listens on, and how a client reaches them."""

from __future__ import annotations

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


def split_address(address: str) -> tuple[str, str]:
    """``host`` and ``port`` of ``host:port``; an IPv6 host keeps its brackets."""
    host, _, port = address.rpartition(":")
    return host, port


def is_wildcard(host: str) -> bool:
    """Whether listening on ``host`` means listening on every interface."""
    return host in WILDCARD_HOSTS


def dialable(address: str) -> str:
    """A listening address as a local client reaches it: a wildcard host becomes loopback."""
    host, port = split_address(address)
    if not is_wildcard(host):
        return address
    loopback = "[::1]" if ":" in host else "127.0.0.1"
    return f"{loopback}:{port}"
