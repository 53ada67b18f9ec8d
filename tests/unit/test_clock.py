"""The clocks: wall time is aware UTC; simulated time only moves forward, firing timers in order."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tests.unit.paper_support import make_broker, market
from Webapp.broker.base import Side
from Webapp.execution.clock import (
    SimulatedClock,
    WallClock,
    is_trading_time,
    next_session_open,
    session_date,
)
from Webapp.market.calendar import MarketCalendar

START = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # a Monday, 08:30 IST: before the open
IST = timezone(timedelta(hours=5, minutes=30))
# Only a guard against a hung test: the timer below is due at once.
HANG_GUARD_S = 10


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


# --- the wall clock ------------------------------------------------------------------------


def test_wall_clock_now_is_aware_utc():
    now = WallClock().now()
    assert now.tzinfo is UTC and now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)


def test_wall_clock_monotonic_never_goes_back():
    clock = WallClock()
    first = clock.monotonic()
    assert clock.monotonic() >= first


def test_wall_clock_wait_returns_at_once_when_stop_is_set():
    stop = threading.Event()
    stop.set()
    assert WallClock().wait(3600, stop) is True


def test_wall_clock_wait_returns_false_when_the_time_passes():
    assert WallClock().wait(0, threading.Event()) is False


def test_wall_clock_timer_fires_on_its_own_thread_and_cancel_stops_it():
    clock = WallClock()
    fired = threading.Event()
    clock.call_at(clock.now() - timedelta(seconds=1), fired.set)  # past: due at once
    assert fired.wait(HANG_GUARD_S)
    never = threading.Event()
    timer = clock.call_later(3600, never.set)
    timer.cancel()
    assert timer.cancelled and not never.is_set()


# --- the simulated clock ---------------------------------------------------------------------


def test_simulated_clock_starts_where_told_in_utc():
    clock = SimulatedClock(datetime(2026, 11, 23, 8, 30, tzinfo=IST))
    assert clock.now() == START and clock.now().tzinfo is UTC
    assert clock.monotonic() == 0.0


def test_simulated_clock_refuses_a_naive_start():
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedClock(datetime(2026, 11, 23, 3, 0))


def test_advance_moves_now_and_monotonic_together():
    clock = SimulatedClock(START, monotonic_start=100.0)
    assert clock.advance(timedelta(seconds=90)) == at(1.5)
    assert clock.now() == at(1.5) and clock.monotonic() == 190.0


def test_the_clock_never_goes_backwards():
    clock = SimulatedClock(START)
    clock.set(at(5))
    with pytest.raises(ValueError, match="never goes backwards"):
        clock.set(at(4))
    with pytest.raises(ValueError, match="never goes backwards"):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == at(5)
    assert clock.set(at(5)) == at(5)  # standing still is allowed


def test_timers_fire_in_time_order_each_at_its_own_time():
    clock = SimulatedClock(START)
    seen: list[tuple[str, datetime]] = []
    for name, minute in [("c", 3), ("a", 1), ("b", 2), ("b2", 2), ("late", 10)]:
        clock.call_at(at(minute), lambda name=name: seen.append((name, clock.now())))
    clock.advance(timedelta(minutes=5))
    assert seen == [("a", at(1)), ("b", at(2)), ("b2", at(2)), ("c", at(3))]
    assert clock.now() == at(5) and clock.pending_timers == 1
    assert clock.next_timer_at() == at(10)


def test_a_timer_due_exactly_at_the_target_fires():
    clock = SimulatedClock(START)
    fired: list[datetime] = []
    clock.call_at(at(1), lambda: fired.append(clock.now()))
    clock.set(at(1))
    assert fired == [at(1)]


def test_a_repeating_scan_timer_fires_every_interval_within_one_move():
    clock = SimulatedClock(START)
    scans: list[datetime] = []

    def scan() -> None:
        scans.append(clock.now())
        clock.call_later(60, scan)  # the engine re-arms its scan timer like this

    clock.call_at(at(1), scan)
    clock.advance(timedelta(minutes=4, seconds=30))
    assert scans == [at(1), at(2), at(3), at(4)]
    assert clock.next_timer_at() == at(5)


def test_a_timer_for_a_past_time_fires_on_the_next_move_without_moving_back():
    clock = SimulatedClock(START)
    clock.set(at(5))
    fired: list[datetime] = []
    clock.call_at(at(2), lambda: fired.append(clock.now()))
    assert fired == []
    clock.advance(timedelta(0))
    assert fired == [at(5)]


def test_a_cancelled_timer_does_not_fire():
    clock = SimulatedClock(START)
    fired: list[str] = []
    timer = clock.call_at(at(1), lambda: fired.append("x"))
    timer.cancel()
    clock.advance(timedelta(minutes=2))
    assert fired == [] and clock.pending_timers == 0 and clock.next_timer_at() is None


def test_a_timer_that_raises_leaves_the_clock_at_its_time():
    clock = SimulatedClock(START)
    fired: list[datetime] = []

    def boom() -> None:
        raise RuntimeError("scan failed")

    clock.call_at(at(1), boom)
    clock.call_at(at(2), lambda: fired.append(clock.now()))
    with pytest.raises(RuntimeError, match="scan failed"):
        clock.advance(timedelta(minutes=3))
    assert clock.now() == at(1) and fired == []
    clock.advance(timedelta(minutes=2))
    assert fired == [at(2)] and clock.now() == at(3)


def test_simulated_wait_advances_unless_stopped():
    clock = SimulatedClock(START)
    stop = threading.Event()
    assert clock.wait(30, stop) is False and clock.now() == START + timedelta(seconds=30)
    stop.set()
    assert clock.wait(30, stop) is True and clock.now() == START + timedelta(seconds=30)


def test_a_paper_broker_runs_on_the_simulated_clock():
    clock = SimulatedClock(START)
    broker = make_broker(clock=clock.now)
    clock.advance(timedelta(minutes=75))
    broker.on_price("INFY", 1000.0)
    order = broker.place_order(market(Side.BUY, 1, tag="Lclock"))
    assert order.updated_at == at(75)


# --- the calendar at the clock's time ------------------------------------------------------

CALENDAR = MarketCalendar([date(2026, 11, 24)])  # a Tuesday holiday


def test_trading_time_follows_the_clock_through_the_session():
    clock = SimulatedClock(START)  # Monday 08:30 IST
    assert session_date(clock, CALENDAR) == date(2026, 11, 23)
    assert not is_trading_time(clock, CALENDAR)
    clock.set(datetime(2026, 11, 23, 9, 15, tzinfo=IST))
    assert is_trading_time(clock, CALENDAR)
    clock.set(datetime(2026, 11, 23, 15, 30, tzinfo=IST))
    assert not is_trading_time(clock, CALENDAR)


def test_the_session_date_is_the_ist_date_not_the_utc_date():
    clock = SimulatedClock(datetime(2026, 11, 23, 20, 0, tzinfo=UTC))  # 01:30 IST on the 24th
    assert session_date(clock, CALENDAR) == date(2026, 11, 24)


def test_next_session_open_skips_the_holiday():
    clock = SimulatedClock(datetime(2026, 11, 23, 16, 0, tzinfo=IST))
    assert next_session_open(clock, CALENDAR) == datetime(2026, 11, 25, 9, 15, tzinfo=IST)
