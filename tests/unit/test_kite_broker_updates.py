"""Kite dicts as base dataclasses, and order updates from several sources emitted once per state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from Webapp.broker.base import GttState, GttType, InputRejected, OrderState, OrderType, Side
from Webapp.broker.kite_convert import (
    kite_time,
    order_state,
    to_gtt,
    to_holding,
    to_margins,
    to_order,
)
from Webapp.broker.order_updates import OrderPoller, OrderUpdateTracker


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("COMPLETE", OrderState.FILLED),
        ("CANCELLED", OrderState.CANCELLED),
        ("REJECTED", OrderState.REJECTED),
        ("OPEN", OrderState.OPEN),
        ("TRIGGER PENDING", OrderState.OPEN),
        ("UPDATE", OrderState.OPEN),  # a postback: modified or partly filled, still open
        ("OPEN PENDING", OrderState.PENDING),
        ("VALIDATION PENDING", OrderState.PENDING),
        ("MODIFY VALIDATION PENDING", OrderState.PENDING),
        ("PUT ORDER REQ RECEIVED", OrderState.PENDING),
        ("AMO REQ RECEIVED", OrderState.PENDING),
        ("CANCEL PENDING", OrderState.PENDING),
        ("SOMETHING NEW", OrderState.PENDING),
    ],
)
def test_kite_statuses_map_to_order_states(status, state, caplog):
    assert order_state(status) is state
    assert ("unknown Kite order status" in caplog.text) == (status == "SOMETHING NEW")


def test_kite_naive_ist_times_become_aware_utc():
    expected = datetime(2026, 3, 2, 3, 45, 4, tzinfo=UTC)
    assert kite_time("2026-03-02 09:15:04") == expected
    assert kite_time(datetime(2026, 3, 2, 9, 15, 4)) == expected
    assert kite_time(None) is None and kite_time("") is None


RAW_ORDER = {
    "order_id": "260302000000001",
    "status": "COMPLETE",
    "tradingsymbol": "INFY",
    "exchange": "NSE",
    "transaction_type": "BUY",
    "order_type": "LIMIT",
    "product": "CNC",
    "quantity": 3,
    "filled_quantity": 3,
    "average_price": 1000.5,
    "price": 1001.0,
    "tag": "L1a2b3c",
    "order_timestamp": "2026-03-02 09:15:04",
    "exchange_update_timestamp": "2026-03-02 09:15:05",
    "status_message": None,
}


def test_an_order_dict_becomes_an_order():
    order = to_order(RAW_ORDER)
    assert order.order_id == "260302000000001" and order.tag == "L1a2b3c"
    assert (order.symbol, order.side, order.order_type) == ("INFY", Side.BUY, OrderType.LIMIT)
    assert (order.state, order.quantity, order.filled_quantity) == (OrderState.FILLED, 3, 3)
    assert order.average_price == 1000.5 and order.price == 1001.0
    assert order.updated_at == datetime(2026, 3, 2, 3, 45, 5, tzinfo=UTC)


def test_an_update_without_an_order_id_is_refused():
    with pytest.raises(InputRejected, match="order_id"):
        to_order({"status": "OPEN"})


def test_a_gtt_dict_becomes_a_gtt_with_its_fired_order():
    raw = {
        "id": 100001,
        "type": "two-leg",
        "status": "triggered",
        "created_at": "2026-03-02 09:20:00",
        "updated_at": "2026-03-02 10:00:00",
        "condition": {"exchange": "NSE", "tradingsymbol": "INFY", "last_price": 1000.0,
                      "trigger_values": [975.0, 1050.0]},  # fmt: skip
        "orders": [
            {"transaction_type": "SELL", "quantity": 3, "price": 970.1, "result": None},
            {"transaction_type": "SELL", "quantity": 3, "price": 1044.75,
             "result": {"order_result": {"order_id": "9", "status": "success",
                                         "rejection_reason": ""}}},
        ],
    }  # fmt: skip
    gtt = to_gtt(raw)
    assert (gtt.gtt_id, gtt.gtt_type, gtt.state) == (100001, GttType.TWO_LEG, GttState.TRIGGERED)
    assert gtt.triggers == (975.0, 1050.0) and gtt.limit_prices == (970.1, 1044.75)
    assert gtt.quantity == 3 and gtt.side is Side.SELL and gtt.last_price == 1000.0
    assert [(r.leg, r.order_id, r.status) for r in gtt.results] == [(1, "9", "success")]


def test_holdings_count_t1_shares_and_margins_read_the_equity_segment():
    holding = to_holding({"tradingsymbol": "INFY", "quantity": 2, "t1_quantity": 3,
                          "average_price": 990.0, "last_price": 1000.0})  # fmt: skip
    assert holding.quantity == 5
    margins = to_margins({"net": 90.0, "available": {"cash": 100.0, "live_balance": 95.0},
                          "utilised": {"debits": 5.0}})  # fmt: skip
    assert (margins.available_cash, margins.utilised, margins.net) == (95.0, 5.0, 90.0)


# --- one update per distinct state --------------------------------------------------------------


@pytest.fixture
def emitted():
    return []


@pytest.fixture
def tracker(emitted):
    return OrderUpdateTracker(emitted.append)


def step(status, filled=0, **kw):
    return to_order({**RAW_ORDER, "status": status, "filled_quantity": filled, **kw})


def test_the_same_state_from_three_sources_is_emitted_once(tracker, emitted):
    assert tracker.ingest(step("OPEN"), "ticker") is not None
    assert tracker.ingest(step("OPEN"), "postback") is None
    assert tracker.ingest(step("OPEN"), "poll") is None
    assert [(u.order.state, u.source) for u in emitted] == [(OrderState.OPEN, "ticker")]


def test_each_new_state_is_emitted_in_order(tracker, emitted):
    for status, filled in [("OPEN", 0), ("OPEN", 1), ("OPEN", 1), ("COMPLETE", 3)]:
        tracker.ingest(step(status, filled), "ticker")
    assert [(u.order.state, u.order.filled_quantity) for u in emitted] == [
        (OrderState.OPEN, 0),
        (OrderState.OPEN, 1),
        (OrderState.FILLED, 3),
    ]


def test_a_stale_report_never_undoes_a_fill_or_a_final_state(tracker, emitted):
    tracker.ingest(step("OPEN", 2), "ticker")
    tracker.ingest(step("OPEN", 1), "poll")  # the poller read the book a moment earlier
    tracker.ingest(step("COMPLETE", 3), "postback")
    tracker.ingest(step("OPEN", 2), "poll")
    assert [u.source for u in emitted] == ["ticker", "postback"]
    assert tracker.seen(RAW_ORDER["order_id"]).state is OrderState.FILLED


def test_the_poller_feeds_every_order_and_survives_a_failed_read(emitted, tracker):
    from Webapp.broker.base import NetworkUnavailable

    reads = [NetworkUnavailable("orders: down", maybe_applied=True), [step("OPEN")]]

    def fetch():
        result = reads.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    poller = OrderPoller(fetch, tracker.ingest, interval_s=60)
    poller.poll_once()
    assert poller.last_error == "orders: down" and emitted == []
    poller.poll_once()
    assert poller.last_error is None
    assert [(u.order.state, u.source) for u in emitted] == [(OrderState.OPEN, "poll")]
