"""KiteFeed against kitesim's ticker through the unmodified KiteTicker: prices, faults, tokens."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from twisted.internet import reactor

from tests.kitesim.fixtures import KiteSim
from tests.kitesim.packets import DepthLevel
from tests.kitesim.ticker import TickerSim
from Webapp.event_bus import EventBus
from Webapp.market.feeds.base import FeedState
from Webapp.market.feeds.kite import NO_TOKEN, TOKEN_EXPIRED, KiteFeed
from Webapp.market.feeds.kite_shards import plan_shards
from Webapp.market.ltp_store import LTPStore, Quote

INFY, RELIANCE, TCS, HDFCBANK, SBIN = 408065, 738561, 2953217, 341249, 779521
NIFTY_50 = 256265  # segment 9: an index
INSTRUMENTS = {
    INFY: "INFY",
    RELIANCE: "RELIANCE",
    TCS: "TCS",
    HDFCBANK: "HDFCBANK",
    SBIN: "SBIN",
    NIFTY_50: "NIFTY 50",
}
WAIT_S = 10.0

# Short delays so faults recover in a fraction of a second.
FAST = {
    "stale_after_s": 1.0,
    "reconnect_initial_delay_s": 0.05,
    "reconnect_max_delay_s": 0.2,
    "connect_timeout_s": 5.0,
    "token_retry_s": 0.05,
    "publish_every_s": 0.1,
    "silent_reconnect_s": None,
}


class Quotes:
    """Every quote the store publishes, kept so a test can wait for one in any order."""

    def __init__(self, store: LTPStore) -> None:
        self.seen: list[Quote] = []
        self._arrived = threading.Condition()
        store.subscribe(self._add)

    def _add(self, quote: Quote) -> None:
        with self._arrived:
            self.seen.append(quote)
            self._arrived.notify_all()

    def wait(
        self, symbol: str, accept: Callable[[Quote], bool] = lambda q: True, timeout=WAIT_S
    ) -> Quote:
        def match() -> Quote | None:
            return next((q for q in self.seen if q.symbol == symbol and accept(q)), None)

        with self._arrived:
            if not self._arrived.wait_for(match, timeout):
                raise AssertionError(f"no matching quote for {symbol} within {timeout}s")
            return match()


class FeedEvents:
    """Payloads published on the bus topic "feed"."""

    def __init__(self, bus: EventBus) -> None:
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.all: list[dict[str, Any]] = []
        bus.subscribe("feed", lambda _topic, payload: self._queue.put(payload))

    def wait(self, accept: Callable[[dict[str, Any]], bool], timeout=WAIT_S) -> dict[str, Any]:
        deadline = datetime.now(UTC).timestamp() + timeout
        while (left := deadline - datetime.now(UTC).timestamp()) > 0:
            try:
                payload = self._queue.get(timeout=left)
            except queue.Empty:
                break
            self.all.append(payload)
            if accept(payload):
                return payload
        raise AssertionError(f"no matching feed event within {timeout}s; saw {self.all[-5:]}")

    def wait_state(self, state: FeedState, timeout=WAIT_S) -> dict[str, Any]:
        return self.wait(lambda p: p["state"] == state.value, timeout)


class TokenBox:
    """An access-token provider whose answer a test changes; counts and signals its calls."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0
        self._called = threading.Condition()

    def __call__(self) -> str:
        with self._called:
            self.calls += 1
            self._called.notify_all()
            return self.token

    def wait_calls(self, count: int, timeout=WAIT_S) -> None:
        with self._called:
            assert self._called.wait_for(lambda: self.calls >= count, timeout), self.calls


class Harness:
    def __init__(self, sim: KiteSim) -> None:
        self.sim = sim.ticker
        self.api_key = sim.api_key
        self.tokens = TokenBox(sim.access_token)
        self.store = LTPStore()
        self.bus = EventBus()
        self.quotes = Quotes(self.store)
        self.events = FeedEvents(self.bus)
        self.feeds: list[KiteFeed] = []

    def feed(self, instruments=INSTRUMENTS, **kwargs: Any) -> KiteFeed:
        feed = KiteFeed(
            store=self.store,
            bus=self.bus,
            api_key=self.api_key,
            access_token=self.tokens,
            instruments=instruments,
            root=self.sim.url,
            **{**FAST, **kwargs},
        )
        self.feeds.append(feed)
        return feed

    def start(self, instruments=INSTRUMENTS, **kwargs: Any) -> KiteFeed:
        """A started feed, once every connection is open and subscribed in its mode."""
        feed = self.feed(instruments, **kwargs)
        feed.start()
        self.events.wait_state(FeedState.RUNNING)
        self.wait_subscribed(set(instruments), kwargs.get("mode", "quote"))
        return feed

    def wait_subscribed(self, tokens: set[int], mode: str) -> None:
        self.sim.wait_until(
            lambda: self.sim.subscriptions() == dict.fromkeys(tokens, mode),
            WAIT_S,
            f"{len(tokens)} tokens subscribed in {mode} mode",
        )


@pytest.fixture
def harness(kitesim: KiteSim) -> Iterator[Harness]:
    harness = Harness(kitesim)
    yield harness
    for feed in harness.feeds:
        feed.stop()


# --- prices and modes ---------------------------------------------------------------------


def test_quote_packets_bring_price_and_volume_to_the_store(harness):
    harness.start(mode="quote")
    harness.sim.set_price(INFY, 1523.45, volume=120_500)
    quote = harness.quotes.wait("INFY", lambda q: q.ltp == 1523.45)
    assert quote.volume == 120_500
    assert quote.exchange_time is None  # quote packets carry no timestamp
    assert (datetime.now(UTC) - quote.received_at).total_seconds() < WAIT_S


def test_ltp_packets_bring_the_price_alone(harness):
    harness.start(mode="ltp")
    harness.sim.set_price(RELIANCE, 2874.9, volume=99)
    quote = harness.quotes.wait("RELIANCE", lambda q: q.ltp == 2874.9)
    assert (quote.volume, quote.exchange_time) == (0, None)


def test_full_packets_bring_the_exchange_time_for_stocks_and_indices(harness):
    harness.start(mode="full")
    at = datetime(2026, 3, 2, 4, 0, 5, tzinfo=UTC)
    bids = (DepthLevel(3901.0, 40, 3),)
    harness.sim.set_price(TCS, 3901.05, volume=5_000, exchange_timestamp=at, bids=bids)
    quote = harness.quotes.wait("TCS", lambda q: q.ltp == 3901.05)
    assert (quote.volume, quote.exchange_time) == (5_000, at)
    harness.sim.set_price(NIFTY_50, 22514.65, exchange_timestamp=at)
    index = harness.quotes.wait("NIFTY 50", lambda q: q.ltp == 22514.65)
    assert (index.volume, index.exchange_time) == (0, at)


@pytest.mark.parametrize("mode", ["ltp", "quote", "full"])
def test_every_instrument_is_subscribed_in_the_configured_mode(harness, mode):
    harness.start(mode=mode)
    (client,) = harness.sim.clients()
    assert client.subscriptions == dict.fromkeys(INSTRUMENTS, mode)
    assert {"a": "mode", "v": [mode, list(INSTRUMENTS)]} in client.received


def test_ticks_per_second_reach_the_bus(harness):
    harness.start()
    for step in range(1, 41):
        harness.sim.set_price(SBIN, 800 + step / 20)
    harness.quotes.wait("SBIN", lambda q: q.ltp == 802.0)
    event = harness.events.wait(lambda p: p["ticks_per_s"] > 0)
    assert event["name"] == "kite" and event["state"] == "running"
    assert harness.feeds[0].status().ticks_total >= 40


def test_set_mode_switches_every_connection(harness):
    feed = harness.start(mode="ltp", max_per_connection=3)
    feed.set_mode("full")
    harness.wait_subscribed(set(INSTRUMENTS), "full")


# --- sharding ------------------------------------------------------------------------------


def test_instruments_are_sharded_over_connections_each_subscribed_to_its_share(harness):
    five = {t: INSTRUMENTS[t] for t in (INFY, RELIANCE, TCS, HDFCBANK, SBIN)}
    harness.start(five, mode="full", max_per_connection=2)
    clients = harness.sim.clients()
    assert len(clients) == 3
    shares = [set(c.subscriptions) for c in clients]
    assert sorted(len(s) for s in shares) == [1, 2, 2]
    assert set().union(*shares) == set(five)
    assert all(mode == "full" for c in clients for mode in c.subscriptions.values())
    harness.sim.set_prices({token: 100.0 + n for n, token in enumerate(five)})
    for n, symbol in enumerate(five.values()):
        harness.quotes.wait(symbol, lambda q, price=100.0 + n: q.ltp == price)


def test_plan_shards_balances_and_refuses_more_than_kite_allows():
    assert [len(s) for s in plan_shards(list(range(1, 3002)), 3000, 3)] == [1501, 1500]
    assert plan_shards([1, 2, 3, 4, 5], 2, 3) == [[1, 2], [3, 4], [5]]
    with pytest.raises(ValueError, match=r"9,001 instruments need 4 connections.*9,000"):
        plan_shards(list(range(1, 9002)), 3000, 3)
    with pytest.raises(ValueError, match="max_per_connection"):
        plan_shards([1], 3001, 3)


def test_feed_refuses_more_than_9000_instruments(harness):
    many = {token: f"SYM{token}" for token in range(1, 9002)}
    with pytest.raises(ValueError, match="9,000 per API key"):
        harness.feed(many)


# --- faults -------------------------------------------------------------------------------


def test_reconnects_after_a_dropped_socket_and_resubscribes_in_the_same_mode(harness):
    harness.start(mode="full", max_per_connection=3)
    assert harness.sim.drop_all() == 2
    harness.sim.wait_until(lambda: harness.sim.connections_total == 4, WAIT_S, "2 reconnects")
    harness.wait_subscribed(set(INSTRUMENTS), "full")
    for client in harness.sim.clients():
        modes = [m["v"][0] for m in client.received if m["a"] == "mode"]
        assert modes and set(modes) == {"full"}
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    harness.sim.set_price(HDFCBANK, 1688.8, volume=42, exchange_timestamp=at)
    quote = harness.quotes.wait("HDFCBANK", lambda q: q.ltp == 1688.8)
    assert (quote.volume, quote.exchange_time) == (42, at)
    harness.events.wait(lambda p: p["state"] == "running" and p["connections_open"] == 2)


def test_a_restarted_server_is_found_again_after_refused_reconnects(harness):
    harness.start(mode="full")
    port = harness.sim.port
    harness.sim.stop()  # now the port refuses TCP connections outright
    harness.events.wait(lambda p: "connection 1 of 1 reconnecting, attempt 2" in p["detail"])
    with TickerSim(port=port, heartbeat_interval_s=0.1) as restarted:
        restarted.wait_until(
            lambda: restarted.subscriptions() == dict.fromkeys(INSTRUMENTS, "full"),
            WAIT_S,
            "resubscribed in full mode",
        )
        restarted.set_price(INFY, 1499.95)
        harness.quotes.wait("INFY", lambda q: q.ltp == 1499.95)


def test_mode_changed_while_connected_survives_a_reconnect(harness):
    feed = harness.start(mode="quote")
    feed.set_mode("ltp")
    harness.wait_subscribed(set(INSTRUMENTS), "ltp")
    harness.sim.drop_all()
    harness.sim.wait_until(lambda: harness.sim.connections_total == 2, WAIT_S, "a reconnect")
    harness.wait_subscribed(set(INSTRUMENTS), "ltp")


def test_silence_makes_the_feed_stale_and_data_makes_it_running_again(harness):
    feed = harness.start(stale_after_s=0.4)
    harness.sim.silence()
    stale = harness.events.wait_state(FeedState.STALE)
    assert "no data for" in stale["detail"] and "connection 1 of 1" in stale["detail"]
    assert feed.status().state is FeedState.STALE
    harness.sim.resume()
    harness.events.wait_state(FeedState.RUNNING)
    harness.sim.set_price(INFY, 1500.0)
    harness.quotes.wait("INFY", lambda q: q.ltp == 1500.0)


def test_heartbeats_alone_keep_a_quiet_feed_running(harness):
    feed = harness.start(stale_after_s=0.4)
    started = datetime.now(UTC)
    # Periodic bus events over three times stale_after_s, without a single tick.
    harness.events.wait(lambda p: (datetime.now(UTC) - started).total_seconds() > 1.2)
    assert all(p["state"] == "running" for p in harness.events.all[-8:])
    assert feed.status().ticks_total == 0
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert feed.status(now=later).state is FeedState.STALE


def test_a_silent_connection_is_cut_and_reopened(harness):
    harness.start(stale_after_s=0.3, silent_reconnect_s=0.6)
    harness.sim.silence()
    harness.sim.wait_until(lambda: harness.sim.connections_total >= 2, WAIT_S, "a fresh connection")
    harness.sim.resume()
    harness.events.wait_state(FeedState.RUNNING)


@pytest.mark.parametrize("kind", ["truncated", "unknown_length", "text"])
def test_garbage_frames_do_not_break_the_connection(harness, kind):
    feed = harness.start()
    harness.sim.send_garbage(kind)
    harness.sim.set_price(TCS, 3999.95)
    harness.quotes.wait("TCS", lambda q: q.ltp == 3999.95)
    assert harness.sim.connections_total == 1
    assert feed.status().state is FeedState.RUNNING


@pytest.mark.parametrize("status", [None, 503], ids=["closed", "http-503"])
def test_refused_connections_are_retried_with_backoff_until_accepted(harness, status):
    harness.sim.refuse_connections(status)
    feed = harness.feed()
    feed.start()
    harness.sim.wait_until(lambda: harness.sim.refused_total >= 3, WAIT_S, "3 refused attempts")
    assert feed.status().state is FeedState.STARTING
    assert "connection 1 of 1 connecting" in feed.status().detail
    assert harness.tokens.calls == 1  # not mistaken for a refused token
    harness.sim.accept_connections()
    harness.events.wait_state(FeedState.RUNNING)
    harness.wait_subscribed(set(INSTRUMENTS), "quote")


def test_order_updates_and_kite_errors_reach_the_feed(harness):
    orders: queue.Queue[dict[str, Any]] = queue.Queue()
    feed = harness.start(on_order_update=orders.put)
    harness.sim.send_order_update({"order_id": "2400001", "status": "COMPLETE"})
    assert orders.get(timeout=WAIT_S) == {"order_id": "2400001", "status": "COMPLETE"}
    harness.sim.send_error("kitesim says hello")
    harness.sim.send_order_update({"order_id": "2400002", "status": "OPEN"})
    assert orders.get(timeout=WAIT_S)["order_id"] == "2400002"  # events are handled in order
    assert feed.last_kite_error == "kitesim says hello"


# --- access tokens ---------------------------------------------------------------------------


def test_expired_token_is_replaced_by_the_providers_new_one(harness):
    harness.start(mode="full", max_per_connection=3)
    calls_before = harness.tokens.calls
    harness.sim.add_access_token("token-day-2")
    harness.tokens.token = "token-day-2"
    harness.sim.expire_access_token("kitesim_access_token")
    harness.sim.wait_until(
        lambda: [c.access_token for c in harness.sim.clients()] == ["token-day-2"] * 2,
        WAIT_S,
        "both connections on the new token",
    )
    harness.wait_subscribed(set(INSTRUMENTS), "full")
    assert harness.tokens.calls > calls_before
    harness.sim.set_price(SBIN, 811.15)
    harness.quotes.wait("SBIN", lambda q: q.ltp == 811.15)
    harness.events.wait_state(FeedState.RUNNING)


def test_expired_token_without_a_new_one_is_an_error_polled_quietly(harness):
    feed = harness.start()
    harness.sim.expire_access_token("kitesim_access_token")
    error = harness.events.wait_state(FeedState.ERROR)
    assert error["detail"] == TOKEN_EXPIRED
    calls = harness.tokens.calls
    harness.tokens.wait_calls(calls + 3)  # the provider is polled every token_retry_s...
    assert harness.sim.rejected_total == 1  # ...but the server sees no retry with the old token
    assert feed.status().detail == TOKEN_EXPIRED

    harness.sim.add_access_token("token-after-login")
    harness.tokens.token = "token-after-login"
    harness.events.wait_state(FeedState.RUNNING)
    harness.wait_subscribed(set(INSTRUMENTS), "quote")
    assert [c.access_token for c in harness.sim.clients()] == ["token-after-login"]


def test_no_token_at_start_is_an_error_until_one_appears(harness):
    harness.tokens.token = ""
    feed = harness.feed()
    feed.start()
    assert harness.events.wait_state(FeedState.ERROR)["detail"] == NO_TOKEN
    harness.tokens.token = "kitesim_access_token"
    harness.events.wait_state(FeedState.RUNNING)


# --- the one reactor ---------------------------------------------------------------------------


def _reactor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "twisted-reactor"]


def test_two_feeds_one_after_another_share_the_one_reactor(harness):
    for number, price in zip(itertools.count(1), (101.5, 102.5), strict=False):
        feed = harness.start(mode="ltp", max_per_connection=2)
        assert harness.sim.connection_count == 3
        harness.sim.set_price(INFY, price)
        harness.quotes.wait("INFY", lambda q, price=price: q.ltp == price)
        feed.stop()
        assert feed.status().state is FeedState.STOPPED
        harness.sim.wait_until(lambda: harness.sim.connection_count == 0, WAIT_S, "all closed")
        assert harness.sim.connections_total == 3 * number
        assert reactor.running
        assert len(_reactor_threads()) == 1


def test_two_feeds_at_once_each_get_their_instruments(harness):
    first = harness.feed({INFY: "INFY", TCS: "TCS"}, max_per_connection=1)
    second = harness.feed({SBIN: "SBIN"}, mode="full")
    first.start()
    second.start()
    harness.sim.wait_until(lambda: harness.sim.connection_count == 3, WAIT_S, "3 connections")
    harness.sim.wait_until(
        lambda: harness.sim.subscriptions() == {INFY: "quote", TCS: "quote", SBIN: "full"},
        WAIT_S,
        "each feed's instruments in its mode",
    )
    harness.sim.set_prices({INFY: 1501.0, TCS: 3901.0, SBIN: 801.0})
    for symbol, price in (("INFY", 1501.0), ("TCS", 3901.0), ("SBIN", 801.0)):
        harness.quotes.wait(symbol, lambda q, price=price: q.ltp == price)
    assert len(_reactor_threads()) == 1
