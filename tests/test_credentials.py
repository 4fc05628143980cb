"""Bearer tokens as every authenticated address reads them, and the digests secrets are kept as."""

from __future__ import annotations

import hashlib

import pytest

from control_plane.credentials import bearer_token, sha256_digest


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer s3cret", "s3cret"),
        ("bearer s3cret", "s3cret"),
        ("BEARER  s3cret ", "s3cret"),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic s3cret", None),
        ("s3cret", None),
    ],
)
def test_bearer_token(header: str, token: str | None) -> None:
    assert bearer_token(header) == token


def test_sha256_digest() -> None:
    assert sha256_digest("key") == hashlib.sha256(b"key").digest()
