"""How an agent finds the control plane's socket and paces its reconnection attempts."""

from __future__ import annotations

import random

import pytest

from agent.backoff import Backoff
from agent.runner import socket_url


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("http://127.0.0.1:8060", "ws://127.0.0.1:8060/api/v1/agents/socket"),
        ("https://cp.example.com/", "wss://cp.example.com/api/v1/agents/socket"),
        ("ws://10.0.0.1:9000/custom/path", "ws://10.0.0.1:9000/custom/path"),
        ("127.0.0.1:8060", "ws://127.0.0.1:8060/api/v1/agents/socket"),
    ],
)
def test_socket_url(address: str, expected: str) -> None:
    assert socket_url(address) == expected


@pytest.mark.parametrize("address", ["ftp://host", "http://"])
def test_socket_url_rejects_other_schemes(address: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        socket_url(address)


def test_backoff_grows_jittered_up_to_cap_and_resets() -> None:
    backoff = Backoff(initial=0.2, maximum=2.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    caps = [0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 2.0]
    assert all(cap / 2 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) == len(delays), "delays are jittered"
    backoff.reset()
    assert backoff.next_delay() <= 0.2
