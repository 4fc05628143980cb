"""Under overload the scheduler logs rejections per pool at most once per interval, with how
many were turned away since its last line; its counters still count each one."""

from __future__ import annotations

import logging

import pytest

from control_plane.serving.jobs import InferenceJob
from control_plane.serving.rejections import RejectionLog
from control_plane.serving.scheduler import BufferFull
from tests.test_scheduler import REQUEST, make_scheduler


class Clock:
    """Stands in for time.monotonic: moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and record.name == "paddler.scheduler"
    ]


async def test_rejections_are_summed_up_per_pool_and_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    scheduler = make_scheduler(max_buffered=1)
    clock = Clock()
    scheduler.rejections = RejectionLog(interval=5.0, clock=clock)
    for pool in ("m", "n"):
        scheduler.submit(InferenceJob(pool=pool, request=REQUEST))  # no agent: it waits

    def overflow(pool: str, times: int) -> None:
        for _ in range(times):
            with pytest.raises(BufferFull):
                scheduler.submit(InferenceJob(pool=pool, request=REQUEST))

    overflow("m", 500)
    overflow("n", 3)
    assert warnings(caplog) == [
        "rejected 1 request for m: its buffer is full (1 waiting) "
        "(rejections are logged at most every 5s)",
        "rejected 1 request for n: its buffer is full (1 waiting) "
        "(rejections are logged at most every 5s)",
    ]
    caplog.clear()
    clock.now += 4.0
    overflow("m", 100)
    assert warnings(caplog) == [], "within the interval rejections are only counted"
    clock.now += 1.5
    overflow("m", 1)
    assert warnings(caplog) == [
        "rejected 600 requests for m in the last 6s: its buffer is full (1 waiting) "
        "(rejections are logged at most every 5s)"
    ]
    assert scheduler.counters["rejected_buffer_full"] == 500 + 3 + 100 + 1


async def test_the_rejections_before_an_accepted_request_are_logged_when_due(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    log = RejectionLog(interval=5.0, clock=clock)
    log.rejected("m", 8)
    log.rejected("m", 8)
    log.accepted("m")
    clock.now += 10
    log.accepted("m")
    log.accepted("m")
    assert warnings(caplog) == [
        "rejected 1 request for m: its buffer is full (8 waiting) "
        "(rejections are logged at most every 5s)",
        "rejected 1 request for m in the last 10s: its buffer has room again "
        "(rejections are logged at most every 5s)",
    ]
