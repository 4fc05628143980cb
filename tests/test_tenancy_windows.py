"""The sliding-window counts behind the per-minute limits, with the clock given."""

from __future__ import annotations

import pytest

from control_plane.tenancy.rate_windows import RateWindows, Window, epoch_minute

MINUTE_START = 1_736_942_400.0  # 2025-01-15 12:00:00 UTC, a whole minute


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "count"),
    [
        (0, 0, 0.0, 0.0),
        (0, 5, 30.0, 5.0),
        (10, 0, 0.0, 10.0),  # all of the previous minute is still in the window
        (10, 0, 30.0, 5.0),  # half of it has slid out
        (10, 2, 45.0, 4.5),
        (10, 2, 57.0, 2.5),
    ],
)
def test_count_weighs_the_previous_minute_by_what_is_left_of_it(
    previous: int, current: int, elapsed: float, count: float
) -> None:
    assert Window(previous, current, elapsed).count() == pytest.approx(count)


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "limit", "remaining"),
    [
        (0, 0, 0.0, 3, 3),
        (0, 1, 10.0, 3, 2),
        (3, 0, 20.0, 3, 1),  # 2 still counted of the previous minute
        (3, 1, 30.0, 3, 0),  # 2.5 counted: half a request left is none
        (0, 5, 0.0, 3, 0),
    ],
)
def test_remaining_is_whole_and_never_negative(
    previous: int, current: int, elapsed: float, limit: int, remaining: int
) -> None:
    assert Window(previous, current, elapsed).remaining(limit) == remaining


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "limit", "cost", "wait"),
    [
        (0, 0, 0.0, 3, 1, 0.0),
        (0, 2, 0.0, 3, 1, 0.0),  # exactly up to the limit fits
        # full this minute: wait for the next, then until a third of it slid out
        (0, 3, 0.0, 3, 1, 80.0),
        (0, 3, 50.0, 3, 1, 30.0),
        # the previous minute must slide out until 2 of its 4 are left
        (4, 0, 0.0, 3, 1, 30.0),
        (4, 0, 10.0, 3, 1, 20.0),
        (4, 1, 0.0, 3, 1, 45.0),
        (0, 10, 0.0, 100, 95, 90.0),  # tokens: 10 used, 95 wanted of 100
        (0, 0, 0.0, 100, 101, None),  # more than the limit alone: never
    ],
)
def test_seconds_until_room(
    previous: int, current: int, elapsed: float, limit: int, cost: int, wait: float | None
) -> None:
    found = Window(previous, current, elapsed).seconds_until_room(limit, cost)
    assert found == (None if wait is None else pytest.approx(wait))


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "limit", "cost"),
    [(0, 3, 0.0, 3, 1), (4, 0, 10.0, 3, 1), (4, 1, 0.0, 3, 1), (7, 2, 13.0, 10, 4)],
)
def test_after_the_wait_the_cost_fits_and_not_before(
    previous: int, current: int, elapsed: float, limit: int, cost: int
) -> None:
    wait = Window(previous, current, elapsed).seconds_until_room(limit, cost)
    assert wait is not None and wait > 0

    def window_after(seconds: float) -> Window:
        moment = elapsed + seconds
        if moment < 60:
            return Window(previous, current, moment)
        return Window(current, 0, moment - 60)

    assert window_after(wait).count() + cost <= limit + 1e-6
    assert window_after(wait - 0.5).count() + cost > limit


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "reset"),
    [(0, 0, 12.0, 0.0), (3, 0, 12.0, 48.0), (0, 1, 12.0, 108.0), (3, 1, 0.0, 120.0)],
)
def test_reset_is_when_the_window_is_empty_again(
    previous: int, current: int, elapsed: float, reset: float
) -> None:
    assert Window(previous, current, elapsed).seconds_until_reset() == pytest.approx(reset)


def test_epoch_minute() -> None:
    assert epoch_minute(MINUTE_START) * 60 == MINUTE_START
    assert epoch_minute(MINUTE_START + 59.9) == epoch_minute(MINUTE_START)
    assert epoch_minute(MINUTE_START + 60) == epoch_minute(MINUTE_START) + 1


def test_windows_add_this_replicas_counts_and_the_others() -> None:
    windows = RateWindows()
    minute = epoch_minute(MINUTE_START)
    windows.charge(7, minute - 1, 2, 200)
    windows.charge(7, minute, 1, 100)
    windows.charge(7, minute, 0, -40)  # a correction once the job's real tokens are known
    windows.charge(8, minute, 5, 5)  # another key
    windows.replace_others({(7, minute - 1): (4, 400), (7, minute): (1, 10), (9, minute): (3, 3)})

    requests = windows.requests(7, MINUTE_START + 15)
    tokens = windows.tokens(7, MINUTE_START + 15)

    assert requests == Window(previous=6, current=2, elapsed=15.0)
    assert tokens == Window(previous=600, current=70, elapsed=15.0)
    assert windows.requests(9, MINUTE_START) == Window(0, 3, 0.0)


def test_others_are_replaced_not_added() -> None:
    windows = RateWindows()
    minute = epoch_minute(MINUTE_START)
    windows.replace_others({(1, minute): (4, 40)})
    windows.replace_others({(1, minute): (5, 50)})
    assert windows.requests(1, MINUTE_START).current == 5


def test_forget_before_drops_old_minutes_only() -> None:
    windows = RateWindows()
    minute = epoch_minute(MINUTE_START)
    windows.charge(1, minute - 2, 1, 1)
    windows.charge(1, minute - 1, 2, 2)
    windows.forget_before(minute - 1)
    assert windows.requests(1, MINUTE_START - 60) == Window(0, 2, 0.0)
    assert windows.requests(1, MINUTE_START - 120) == Window(0, 0, 0.0)
