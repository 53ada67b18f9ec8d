"""Order updates from KiteTicker reach KiteBroker through KiteFeed's hook, once per state."""

from __future__ import annotations

import queue

import pytest

from tests.kitesim.fixtures import KiteSim
from Webapp.broker.base import OrderState, OrderUpdate
from Webapp.broker.kite import KiteBroker
from Webapp.event_bus import EventBus
from Webapp.market.feeds.base import FeedState
from Webapp.market.feeds.kite import KiteFeed
from Webapp.market.ltp_store import LTPStore

INFY = 408065
WAIT_S = 10.0


def kite_order(status: str, filled: int = 0) -> dict:
    return {
        "order_id": "260302000000007",
        "status": status,
        "tradingsymbol": "INFY",
        "exchange": "NSE",
        "transaction_type": "BUY",
        "order_type": "MARKET",
        "product": "CNC",
        "quantity": 3,
        "filled_quantity": filled,
        "average_price": 1000.0 if filled else 0,
        "tag": "L7",
        "order_timestamp": "2026-03-02 09:15:04",
    }


@pytest.fixture
def wired(kitesim: KiteSim):
    """A KiteFeed whose order updates go to a KiteBroker; the broker's updates into a queue."""
    broker = KiteBroker(kitesim.api_key, kitesim.access_token, root="http://127.0.0.1:9")
    updates: queue.Queue[OrderUpdate] = queue.Queue()
    broker.on_order_update(updates.put)
    bus = EventBus()
    states: queue.Queue[str] = queue.Queue()
    bus.subscribe("feed", lambda _topic, payload: states.put(payload["state"]))
    feed = KiteFeed(
        store=LTPStore(),
        bus=bus,
        api_key=kitesim.api_key,
        access_token=lambda: kitesim.access_token,
        instruments={INFY: "INFY"},
        root=kitesim.ticker.url,
        on_order_update=broker.ingest_order_update,
        silent_reconnect_s=None,
    )
    feed.start()
    while states.get(timeout=WAIT_S) != FeedState.RUNNING.value:
        pass
    # RUNNING is reported on connect; an order update sent before the server has
    # registered the client's subscription would reach nobody.
    kitesim.ticker.wait_until(lambda: INFY in kitesim.ticker.subscriptions(), WAIT_S, "subscribed")
    yield kitesim.ticker, broker, updates
    feed.stop()
    broker.stop()


def test_ticker_order_updates_are_emitted_once_per_distinct_state(wired):
    ticker, broker, updates = wired
    for status, filled in [("OPEN", 0), ("OPEN", 0), ("COMPLETE", 3), ("COMPLETE", 3)]:
        ticker.send_order_update(kite_order(status, filled))
    first, second = updates.get(timeout=WAIT_S), updates.get(timeout=WAIT_S)
    assert (first.order.state, first.source) == (OrderState.OPEN, "ticker")
    assert (second.order.state, second.order.filled_quantity) == (OrderState.FILLED, 3)
    # A postback of the same final state says nothing new.
    assert broker.ingest_order_update(kite_order("COMPLETE", 3), source="postback") is None
    ticker.send_order_update({**kite_order("OPEN"), "order_id": "260302000000008"})
    assert updates.get(timeout=WAIT_S).order.order_id == "260302000000008"  # nothing in between


def test_a_ticker_update_of_a_partial_fill_keeps_the_order_open_with_its_fill(wired, caplog):
    """Kite's websocket carries `UPDATE` for a partial fill: open, not pending, no warning."""
    ticker, _broker, updates = wired
    for status, filled in [("OPEN", 0), ("UPDATE", 1), ("OPEN", 1), ("COMPLETE", 3)]:
        ticker.send_order_update(kite_order(status, filled))
    seen = [updates.get(timeout=WAIT_S) for _ in range(3)]
    assert [(u.order.state, u.order.filled_quantity) for u in seen] == [
        (OrderState.OPEN, 0),
        (OrderState.OPEN, 1),
        (OrderState.FILLED, 3),
    ]
    assert updates.empty()  # the OPEN after the UPDATE says nothing new
    assert "unknown Kite order status" not in caplog.text
