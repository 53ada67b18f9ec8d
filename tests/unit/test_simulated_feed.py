"""SimulatedFeed: a seeded, tick-exact random walk written into the LTPStore by its own thread."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from Webapp.market.feeds import Feed, FeedState, FeedStatus, SimulatedFeed
from Webapp.market.ltp_store import LTPStore, Quote
from Webapp.market.universe import UniverseMember, load_universe

UNIVERSE = [
    UniverseMember("RELIANCE", 1364.0),
    UniverseMember("TATASTEEL", 168.75),
    UniverseMember("MARUTI", 16029.0),
]


def _ticks(seed, count=200, **kwargs) -> list[tuple[str, float]]:
    feed = SimulatedFeed(LTPStore(), load_universe("nifty50"), seed=seed, **kwargs)
    return [feed.next_tick() for _ in range(count)]


def _on_tick_grid(price: float, tick_size: float = 0.05) -> bool:
    return abs(price / tick_size - round(price / tick_size)) < 1e-6


def _count_quotes(store: LTPStore, enough: int) -> tuple[threading.Event, list[Quote]]:
    """An Event set once the store has seen `enough` updates, and the quotes seen."""
    reached = threading.Event()
    quotes: list[Quote] = []

    def on_quote(quote: Quote) -> None:
        quotes.append(quote)
        if len(quotes) >= enough:
            reached.set()

    store.subscribe(on_quote)
    return reached, quotes


def _sim_feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sim-feed"]


def test_same_seed_gives_the_same_first_200_ticks():
    assert _ticks(seed=7) == _ticks(seed=7)


def test_different_seeds_give_different_ticks():
    assert _ticks(seed=7) != _ticks(seed=8)


def test_prices_stay_positive_and_on_the_tick_grid():
    for _symbol, price in _ticks(seed=1, count=5_000, volatility_pct=2.0):
        assert price > 0
        assert _on_tick_grid(price)


def test_a_wild_walk_never_falls_below_one_tick():
    universe = [UniverseMember("PENNY", 0.10)]
    feed = SimulatedFeed(LTPStore(), universe, seed=3, volatility_pct=80.0)

    prices = [feed.next_tick()[1] for _ in range(2_000)]

    assert min(prices) == 0.05
    assert all(_on_tick_grid(price) for price in prices)


def test_symbols_tick_in_turn_so_each_moves_once_per_round():
    feed = SimulatedFeed(LTPStore(), UNIVERSE, seed=1)

    symbols = [feed.next_tick()[0] for _ in range(2 * len(UNIVERSE))]

    assert symbols == [member.symbol for member in UNIVERSE] * 2


def test_with_zero_volatility_prices_stay_at_ref_price():
    feed = SimulatedFeed(LTPStore(), UNIVERSE, seed=1, volatility_pct=0.0)

    ticks = [feed.next_tick() for _ in range(len(UNIVERSE))]

    assert ticks == [(member.symbol, member.ref_price) for member in UNIVERSE]


def test_walk_starts_near_ref_price():
    feed = SimulatedFeed(LTPStore(), UNIVERSE, seed=5)

    for member in UNIVERSE:
        symbol, price = feed.next_tick()
        assert symbol == member.symbol
        assert price == pytest.approx(member.ref_price, rel=0.01)


def test_next_tick_writes_the_price_and_a_rising_cumulative_volume_into_the_store():
    store = LTPStore()
    feed = SimulatedFeed(store, UNIVERSE, seed=2)
    volumes: dict[str, list[int]] = {}

    for _ in range(30):
        symbol, price = feed.next_tick()
        quote = store.get(symbol)
        assert quote.ltp == price
        assert quote.received_at.utcoffset() == timedelta(0)
        volumes.setdefault(symbol, []).append(quote.volume)

    assert store.version == 30
    for series in volumes.values():
        assert all(later > earlier for earlier, later in zip(series, series[1:], strict=False))
    assert feed.status().ticks_total == 30


@pytest.mark.parametrize("rate", [0, -1.0, float("nan")])
def test_non_positive_rate_is_rejected(rate):
    with pytest.raises(ValueError, match="ticks_per_second"):
        SimulatedFeed(LTPStore(), UNIVERSE, ticks_per_second=rate)


def test_empty_universe_is_rejected():
    with pytest.raises(ValueError, match="universe"):
        SimulatedFeed(LTPStore(), [])


def test_feed_thread_writes_into_the_store_and_stop_ends_it():
    store = LTPStore()
    reached, quotes = _count_quotes(store, enough=25)
    feed = SimulatedFeed(store, UNIVERSE, ticks_per_second=2_000, seed=4)
    assert feed.status().state is FeedState.STOPPED

    feed.start()
    try:
        assert reached.wait(timeout=5), "the feed thread never delivered 25 ticks"
        running = feed.status()
        assert running.state is FeedState.RUNNING
        assert running.ticks_total >= 25
    finally:
        feed.stop(timeout=5)

    assert feed.status().state is FeedState.STOPPED
    assert _sim_feed_threads() == []
    assert {quote.symbol for quote in quotes} == {member.symbol for member in UNIVERSE}


def test_feed_thread_is_a_daemon_named_sim_feed():
    store = LTPStore()
    seen = threading.Event()
    threads: list[threading.Thread] = []

    def on_quote(quote: Quote) -> None:
        threads.append(threading.current_thread())
        seen.set()

    store.subscribe(on_quote)
    feed = SimulatedFeed(store, UNIVERSE, ticks_per_second=50, seed=4)
    feed.start()
    try:
        assert seen.wait(timeout=5)
    finally:
        feed.stop()

    assert threads[0].name == "sim-feed"
    assert threads[0].daemon


def test_threaded_feed_follows_the_same_walk_as_next_tick():
    store = LTPStore()
    reached, quotes = _count_quotes(store, enough=50)
    feed = SimulatedFeed(store, UNIVERSE, ticks_per_second=5_000, seed=11)
    feed.start()
    try:
        assert reached.wait(timeout=5)
    finally:
        feed.stop()

    stepped = SimulatedFeed(LTPStore(), UNIVERSE, seed=11)
    expected = [stepped.next_tick() for _ in range(50)]
    assert [(quote.symbol, quote.ltp) for quote in quotes[:50]] == expected


def test_stop_returns_promptly_even_between_slow_ticks():
    store = LTPStore()
    reached, _ = _count_quotes(store, enough=1)
    # One tick every 100 s: stop() must interrupt the wait, not sit it out.
    feed = SimulatedFeed(store, UNIVERSE, ticks_per_second=0.01, seed=1)
    feed.start()
    assert reached.wait(timeout=5)

    began = time.monotonic()
    feed.stop(timeout=5)

    assert time.monotonic() - began < 2.0
    assert _sim_feed_threads() == []


def test_start_twice_is_refused_and_next_tick_is_refused_while_running():
    store = LTPStore()
    reached, _ = _count_quotes(store, enough=1)
    feed = SimulatedFeed(store, UNIVERSE, ticks_per_second=0.01, seed=1)
    feed.start()
    try:
        assert reached.wait(timeout=5)
        with pytest.raises(RuntimeError, match="already running"):
            feed.start()
        with pytest.raises(RuntimeError, match="next_tick"):
            feed.next_tick()
    finally:
        feed.stop()


def test_feed_can_be_restarted_after_stop():
    store = LTPStore()
    feed = SimulatedFeed(store, UNIVERSE, ticks_per_second=0.01, seed=1)
    for _ in range(2):
        reached, _ = _count_quotes(store, enough=1)
        feed.start()
        try:
            assert reached.wait(timeout=5)
        finally:
            feed.stop()
    assert feed.status().ticks_total == 2


def test_running_feed_reports_stale_once_quiet_for_longer_than_stale_after_s():
    store = LTPStore()
    reached, _ = _count_quotes(store, enough=1)
    # One immediate tick, then nothing for 100 s.
    feed = SimulatedFeed(store, UNIVERSE, ticks_per_second=0.01, seed=1, stale_after_s=10.0)
    feed.start()
    try:
        assert reached.wait(timeout=5)
        last_tick_at = feed.status().last_tick_at
        assert last_tick_at is not None

        fresh = feed.status(now=last_tick_at + timedelta(seconds=10))
        stale = feed.status(now=last_tick_at + timedelta(seconds=10.5))
    finally:
        feed.stop()

    assert fresh.state is FeedState.RUNNING
    assert stale.state is FeedState.STALE
    assert stale.ticks_total == 1 and stale.last_tick_at == last_tick_at
    assert "no tick" in stale.detail


def test_feed_that_errors_reports_error_with_the_cause():
    failed = threading.Event()

    class BrokenStore(LTPStore):
        def update(self, *args, **kwargs):
            failed.set()
            raise OSError("disk full")

    feed = SimulatedFeed(BrokenStore(), UNIVERSE, ticks_per_second=100, seed=1)
    feed.start()
    assert failed.wait(timeout=5)
    feed.stop(timeout=5)

    status = feed.status()
    assert status.state is FeedState.ERROR
    assert "disk full" in status.detail


class _ManualFeed(Feed):
    """A feed driven by the test, to check the base class's status rules on their own."""

    name = "manual"

    def start(self) -> None:
        self._mark_starting()

    def stop(self, timeout: float = 5.0) -> None:
        self._mark_stopped()


def test_feed_status_follows_start_run_tick_and_stop():
    t0 = datetime(2026, 1, 5, 3, 45, tzinfo=UTC)
    feed = _ManualFeed(stale_after_s=5.0)
    assert feed.status(now=t0) == FeedStatus("manual", FeedState.STOPPED, 0, None)

    feed.start()
    assert feed.status(now=t0 + timedelta(hours=1)).state is FeedState.STARTING

    feed._mark_running(now=t0)
    assert feed.status(now=t0 + timedelta(seconds=5)).state is FeedState.RUNNING
    # Running but never ticked: stale counts from when it began running.
    assert feed.status(now=t0 + timedelta(seconds=6)).state is FeedState.STALE

    feed._record_tick(t0 + timedelta(seconds=6))
    assert feed.status(now=t0 + timedelta(seconds=7)).state is FeedState.RUNNING

    feed.stop()
    stopped = feed.status(now=t0 + timedelta(hours=1))
    assert stopped.state is FeedState.STOPPED
    assert stopped.ticks_total == 1


def test_stale_after_s_must_be_positive():
    with pytest.raises(ValueError, match="stale_after_s"):
        _ManualFeed(stale_after_s=0)
