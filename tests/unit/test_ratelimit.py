"""The shared rate limits: Kite's 10/s overall, 3/s historical, 1/s quotes, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from tests.helpers import FakeClock
from Webapp.ratelimit import KiteRateLimits, RateLimiter


def most_in_any_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    return max(
        sum(1 for other in stamps if start <= other < start + window - 1e-9) for start in stamps
    )


@pytest.fixture
def clock():
    return FakeClock(500.0)


@pytest.fixture
def limits(clock):
    return KiteRateLimits(clock=clock, sleep=clock.sleep)


def test_no_more_than_ten_requests_in_any_second_overall(limits, clock):
    stamps = [limits.acquire() for _ in range(35)]
    assert most_in_any_window(stamps, 1.0) == 10
    assert stamps[9] == stamps[0]  # the first ten go at once
    assert stamps[10] == pytest.approx(stamps[0] + 1.0)
    assert stamps[-1] - stamps[0] == pytest.approx(3.0)


def test_no_more_than_three_historical_requests_in_any_second(limits):
    stamps = [limits.acquire("historical") for _ in range(10)]
    assert most_in_any_window(stamps, 1.0) == 3
    assert stamps[-1] - stamps[0] == pytest.approx(3.0)


def test_one_quote_request_a_second(limits):
    stamps = [limits.acquire("quote") for _ in range(4)]
    assert [b - a for a, b in zip(stamps, stamps[1:], strict=False)] == pytest.approx([1.0] * 3)


def test_historical_requests_also_count_toward_the_overall_limit(limits):
    stamps = [limits.acquire("historical") for _ in range(3)]
    stamps += [limits.acquire() for _ in range(12)]
    assert most_in_any_window(stamps, 1.0) == 10
    # 3 historical + 7 others fit in the first second; the other 5 wait for the next.
    assert stamps[9] == stamps[0] and stamps[10] == pytest.approx(stamps[0] + 1.0)


def test_a_throttled_kind_does_not_hold_back_other_requests(limits, clock):
    first_quote = limits.acquire("quote")
    other = limits.acquire("order")
    assert other == first_quote  # no wait: the quote window only limits quotes
    assert clock.sleeps == []


def test_order_placements_are_limited_per_minute(clock):
    limits = KiteRateLimits(orders_per_minute=5, clock=clock, sleep=clock.sleep)
    stamps = [limits.acquire("order") for _ in range(6)]
    assert stamps[4] == stamps[0]
    assert stamps[5] - stamps[0] == pytest.approx(60.0)


def test_unknown_kinds_count_only_toward_the_overall_limit(limits):
    stamps = [limits.acquire("positions") for _ in range(10)]
    assert stamps[-1] == stamps[0]


def test_the_limits_hold_across_threads(limits, clock):
    taken: list[float] = []
    lock = threading.Lock()

    def worker(kind):
        for _ in range(6):
            slot = limits.acquire(kind)
            with lock:
                taken.append((kind, slot))

    threads = [threading.Thread(target=worker, args=(k,)) for k in (None, None, "historical")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 18
    assert most_in_any_window([slot for _, slot in taken], 1.0) <= 10
    assert most_in_any_window([slot for kind, slot in taken if kind == "historical"], 1.0) <= 3


def test_a_kind_view_plugs_into_code_written_for_a_plain_limiter(limits, clock):
    view = limits.historical
    stamps = [view.acquire() for _ in range(4)]
    assert stamps[3] - stamps[0] == pytest.approx(1.0)
    view.sleep(2.5)
    assert clock.sleeps[-1] == 2.5


def test_the_history_module_still_exports_the_rate_limiter():
    from Webapp.market.history import RateLimiter as FromHistory

    assert FromHistory is RateLimiter


def test_a_rate_limit_needs_a_positive_rate():
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(1, 0)
