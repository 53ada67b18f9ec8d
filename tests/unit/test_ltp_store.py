"""LTPStore: latest quote per symbol, versioned change tracking, subscribers outside the lock."""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import finishes_within
from Webapp.market.ltp_store import LTPStore, Quote


def test_update_stores_a_quote_that_get_returns():
    store = LTPStore()
    traded_at = datetime(2025, 9, 30, 9, 45, tzinfo=UTC)
    seen_at = traded_at + timedelta(milliseconds=3)

    quote = store.update("RELIANCE", 1364.0, 14_604_684, traded_at, seen_at)

    assert quote == Quote("RELIANCE", 1364.0, 14_604_684, traded_at, seen_at)
    assert store.get("RELIANCE") is quote
    assert store.get("TCS") is None


def test_received_at_defaults_to_now_in_utc():
    before = datetime.now(UTC)
    quote = LTPStore().update("INFY", 1441.8)
    after = datetime.now(UTC)

    assert quote.received_at.utcoffset() == timedelta(0)
    assert before <= quote.received_at <= after
    assert quote.volume == 0 and quote.exchange_time is None


def test_quote_is_immutable():
    quote = LTPStore().update("ITC", 401.55)
    with pytest.raises(AttributeError):
        quote.ltp = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("bad_ltp", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_non_positive_or_non_finite_ltp_is_rejected_and_changes_nothing(bad_ltp):
    store = LTPStore()
    store.update("SBIN", 872.45)

    with pytest.raises(ValueError, match="SBIN"):
        store.update("SBIN", bad_ltp)

    assert store.get("SBIN").ltp == 872.45
    assert store.version == 1


def test_version_bumps_on_every_update_even_at_the_same_price():
    store = LTPStore()
    assert store.version == 0
    for expected in range(1, 4):
        store.update("TCS", 2888.4)
        assert store.version == expected


def test_snapshot_is_a_copy_unaffected_by_later_updates():
    store = LTPStore()
    store.update("TCS", 2888.4)
    snapshot = store.snapshot()

    store.update("TCS", 2890.0)
    store.update("INFY", 1441.8)
    snapshot["WIPRO"] = snapshot["TCS"]

    assert set(snapshot) == {"TCS", "WIPRO"}
    assert snapshot["TCS"].ltp == 2888.4
    assert set(store.snapshot()) == {"TCS", "INFY"}


def test_changes_since_returns_exactly_the_symbols_updated_after_that_version():
    store = LTPStore()
    store.update("A", 10.0)
    store.update("B", 20.0)
    seen = store.version
    store.update("B", 21.0)
    store.update("C", 30.0)
    store.update("B", 22.0)

    version, changed = store.changes_since(seen)

    assert version == store.version == 5
    assert {symbol: quote.ltp for symbol, quote in changed.items()} == {"B": 22.0, "C": 30.0}
    assert store.changes_since(version) == (5, {})
    assert set(store.changes_since(0)[1]) == {"A", "B", "C"}


def test_concurrent_writers_give_monotonic_versions_and_consistent_reads():
    store = LTPStore()
    writers, updates_each = 4, 3_000
    symbols = [f"SYM{i}" for i in range(writers)]
    start = threading.Barrier(writers + 1)
    finished = queue.Queue()

    def write(symbol: str) -> None:
        start.wait(timeout=5)
        # One writer per symbol, prices rising, so every reader must see them rise too.
        for price in range(1, updates_each + 1):
            store.update(symbol, float(price))
        finished.put(symbol)

    threads = [threading.Thread(target=write, args=(s,), daemon=True) for s in symbols]
    for thread in threads:
        thread.start()
    start.wait(timeout=5)

    last_version = 0
    latest_seen: dict[str, float] = {}
    done: set[str] = set()
    while len(done) < writers:
        with contextlib.suppress(queue.Empty):
            done.add(finished.get_nowait())
        version, changed = store.changes_since(last_version)
        assert version >= last_version
        for symbol, quote in changed.items():
            assert quote.ltp > latest_seen.get(symbol, 0.0)
            latest_seen[symbol] = quote.ltp
        if version == last_version:
            assert changed == {}
        last_version = version

        snapshot = store.snapshot()
        assert all(snapshot[s].ltp >= latest_seen.get(s, 0.0) for s in snapshot)

    version, changed = store.changes_since(last_version)
    latest_seen.update({symbol: quote.ltp for symbol, quote in changed.items()})
    assert version == store.version == writers * updates_each
    assert latest_seen == {symbol: float(updates_each) for symbol in symbols}


def test_subscriber_gets_every_quote_until_it_unsubscribes():
    store = LTPStore()
    received: list[Quote] = []
    unsubscribe = store.subscribe(received.append)

    first = store.update("HDFCBANK", 951.0)
    second = store.update("HDFCBANK", 951.05)
    unsubscribe()
    store.update("HDFCBANK", 951.1)

    assert received == [first, second]


def test_raising_subscriber_is_logged_and_update_still_succeeds(caplog):
    store = LTPStore()
    received: list[Quote] = []

    def broken(quote: Quote) -> None:
        raise RuntimeError("dashboard bug")

    store.subscribe(broken)
    store.subscribe(received.append)

    with caplog.at_level(logging.ERROR, logger="Webapp.market.ltp_store"):
        quote = store.update("LT", 3659.0)

    assert store.get("LT") is quote
    assert received == [quote]
    assert any("dashboard bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_subscriber_runs_in_the_updaters_thread():
    store = LTPStore()
    threads: list[str] = []
    store.subscribe(lambda quote: threads.append(threading.current_thread().name))

    feed = threading.Thread(target=store.update, args=("NTPC", 340.45), name="feed")
    feed.start()
    feed.join(5)

    assert threads == ["feed"]


def test_subscriber_may_read_and_write_the_store_without_deadlock():
    store = LTPStore()

    def mirror(quote: Quote) -> None:
        if quote.symbol == "NIFTY-SPOT":
            return
        assert store.get(quote.symbol) is quote
        store.snapshot()
        store.changes_since(0)
        store.update("NIFTY-SPOT", quote.ltp * 10)

    store.subscribe(mirror)

    assert finishes_within(lambda: store.update("RELIANCE", 1364.0))
    assert store.get("NIFTY-SPOT").ltp == pytest.approx(13640.0)
    assert store.version == 2
