"""Listening addresses, and how a local client dials one whose host is a wildcard."""

from __future__ import annotations

import pytest

from control_plane.addresses import dialable, is_wildcard, split_address


@pytest.mark.parametrize(
    ("address", "dialed"),
    [
        ("0.0.0.0:8060", "127.0.0.1:8060"),
        (":8060", "127.0.0.1:8060"),
        ("[::]:8060", "[::1]:8060"),
        (":::8060", "[::1]:8060"),
        ("10.0.0.5:8060", "10.0.0.5:8060"),
        ("[::1]:8060", "[::1]:8060"),
        ("example.com:8060", "example.com:8060"),
    ],
)
def test_dialable(address: str, dialed: str) -> None:
    assert dialable(address) == dialed


def test_split_address_keeps_ipv6_brackets() -> None:
    assert split_address("[::1]:8061") == ("[::1]", "8061")
    assert split_address("127.0.0.1:8061") == ("127.0.0.1", "8061")


@pytest.mark.parametrize("host", ["", "0.0.0.0", "::", "[::]"])
def test_wildcards(host: str) -> None:
    assert is_wildcard(host)
    assert not is_wildcard("127.0.0.1")
