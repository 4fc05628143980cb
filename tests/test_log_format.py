"""JSON log lines and request ids."""

from __future__ import annotations

import json
import logging

from control_plane.inference.request_ids import request_id_from
from paddler.logs import JsonLineFormatter, current_request_id


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("paddler.test", logging.INFO, __file__, 1, message, args, None)


def test_a_json_line_carries_the_request_id_of_its_context() -> None:
    formatter = JsonLineFormatter()
    plain = json.loads(formatter.format(record("job %s done", "j1")))
    assert plain["message"] == "job j1 done"
    assert plain["level"] == "info" and plain["logger"] == "paddler.test"
    assert "request_id" not in plain
    token = current_request_id.set("req-7")
    try:
        assert json.loads(formatter.format(record("hello")))["request_id"] == "req-7"
    finally:
        current_request_id.reset(token)


def test_client_request_ids_are_kept_only_when_sane() -> None:
    assert request_id_from("abc-123_x.y:z") == "abc-123_x.y:z"
    for bad in (None, "", "has space", "x" * 129, "new\nline"):
        made = request_id_from(bad)
        assert len(made) == 32 and made != bad
