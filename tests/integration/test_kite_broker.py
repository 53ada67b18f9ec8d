"""KiteBroker against kitesim via the official client: methods, rules, token, circuit, limits."""

from __future__ import annotations

import queue
from datetime import UTC, date, datetime

import pytest

from tests.integration import test_kite_broker_support as support
from tests.integration.test_kite_broker_support import buy, oco, sell, single
from Webapp.broker.base import (
    CircuitOpen,
    GttOrderResult,
    GttState,
    GttType,
    InputRejected,
    NetworkUnavailable,
    OrderRejected,
    OrderState,
    OrderType,
    OrderUpdate,
    Side,
    TokenExpired,
)
from Webapp.broker.kite import KiteBroker
from Webapp.market.candle import Timeframe
from Webapp.market.history import fetch_history
from Webapp.market.instruments import InstrumentMap

WAIT_S = 10.0


# The shared fixtures, bound here so that pytest finds them in this module.
clock, sim, bus, events = support.clock, support.sim, support.bus, support.events
make_broker, broker = support.make_broker, support.broker


# --- orders ---------------------------------------------------------------------------------


def test_a_market_buy_goes_out_as_cnc_with_kites_automatic_market_protection(broker, sim):
    order = broker.place_order(buy(tag="Lbuy1"))
    assert order.state is OrderState.PENDING and order.tag == "Lbuy1"
    [placed] = sim.orders_placed()
    assert placed["order_id"] == order.order_id
    assert (placed["product"], placed["order_type"], placed["tag"]) == ("CNC", "MARKET", "Lbuy1")
    assert placed["market_protection"] == -1
    [seen] = broker.orders()
    assert (seen.state, seen.filled_quantity, seen.average_price) == (OrderState.FILLED, 3, 1000.0)
    assert seen.updated_at is not None and seen.updated_at.tzinfo is not None
    history = broker.order_history(order.order_id)
    assert history[0].state is OrderState.PENDING and history[-1].state is OrderState.FILLED


def test_a_resting_limit_is_modified_then_turned_market_and_fills(broker, sim):
    order = broker.place_order(buy(order_type=OrderType.LIMIT, price=990.0))
    assert broker.orders()[0].state is OrderState.OPEN
    broker.modify_order(order.order_id, price=995.0)
    assert sim.orders_placed()[0]["price"] == 995.0
    broker.modify_order(order.order_id, order_type=OrderType.MARKET)
    [placed] = sim.orders_placed()
    assert (placed["status"], placed["market_protection"]) == ("COMPLETE", -1)


def test_cancel_a_resting_order(broker):
    order = broker.place_order(sell(order_type=OrderType.LIMIT, price=1100.0))
    broker.cancel_order(order.order_id)
    assert broker.order_history(order.order_id)[-1].state is OrderState.CANCELLED


def test_cancelling_a_filled_order_is_refused(broker):
    order = broker.place_order(buy())
    with pytest.raises(InputRejected, match=f"cancel_order {order.order_id}"):
        broker.cancel_order(order.order_id)


def test_find_order_by_tag(broker):
    broker.place_order(buy(tag="Lone"))
    broker.place_order(buy(tag="Ltwo"))
    assert broker.find_order_by_tag("Ltwo").tag == "Ltwo"
    assert broker.find_order_by_tag("Lnone") is None


def test_an_order_the_exchange_rejects_is_accepted_then_reported_rejected(broker, sim):
    sim.fail_next("order.place", "reject", message="RMS: margin exceeds")
    order = broker.place_order(buy())
    [seen] = broker.orders()
    assert seen.order_id == order.order_id
    assert (seen.state, seen.status_message) == (OrderState.REJECTED, "RMS: margin exceeds")


def test_an_order_the_oms_refuses_raises_order_rejected_unretried(broker, sim):
    sim.fail_next("order.place", "order_exception")
    with pytest.raises(OrderRejected, match="place_order INFY"):
        broker.place_order(buy())
    assert len(sim.requests_to("order.place")) == 1 and sim.orders_placed() == []


def test_a_partial_fill_rests_open_with_its_filled_part(broker, sim):
    sim.fail_next("order.place", "partial", filled=1)
    broker.place_order(buy())
    [seen] = broker.orders()
    assert (seen.state, seen.filled_quantity, seen.pending_quantity) == (OrderState.OPEN, 1, 2)


# --- account and quotes ---------------------------------------------------------------------


def test_positions_holdings_margins_and_ltp(broker):
    broker.place_order(buy(quantity=2))
    [position] = broker.positions()
    assert (position.symbol, position.quantity, position.product) == ("INFY", 2, "CNC")
    assert position.average_price == 1000.0
    holdings = {h.symbol: h for h in broker.holdings()}
    assert holdings["INFY"].quantity == 10 and holdings["INFY"].average_price == 950.0
    margins = broker.margins()
    assert margins.available_cash > 0 and margins.utilised >= 0
    assert broker.ltp(["INFY", "TCS"]) == {"INFY": 1000.0, "TCS": 3500.0}


# --- GTTs -------------------------------------------------------------------------------------


def test_gtt_place_read_modify_delete(broker, sim):
    gtt_id = broker.place_gtt(oco())
    gtt = broker.get_gtt(gtt_id)
    assert (gtt.state, gtt.gtt_type, gtt.triggers) == (GttState.ACTIVE, GttType.TWO_LEG,
                                                       (975.0, 1050.0))  # fmt: skip
    assert (gtt.limit_prices, gtt.quantity, gtt.side, gtt.last_price) == (
        (970.1, 1044.75), 3, Side.SELL, 1000.0
    )  # fmt: skip
    broker.modify_gtt(gtt_id, oco(stop=980.0))
    assert broker.get_gtt(gtt_id).triggers == (980.0, 1050.0)
    assert [g.gtt_id for g in broker.gtts()] == [gtt_id]
    assert broker.delete_gtt(gtt_id) is GttState.ACTIVE
    assert sim.gtt_book[0]["status"] == "deleted"
    assert broker.gtts() == []


def test_deleting_a_gtt_that_already_fired_says_triggered(broker, sim):
    gtt_id = broker.place_gtt(single(stop=975.0))
    sim.set_price("INFY", 974.0)
    assert broker.delete_gtt(gtt_id) is GttState.TRIGGERED
    fired = broker.get_gtt(gtt_id)
    assert fired.state is GttState.TRIGGERED and fired.results[0].order_id


def test_a_gtt_whose_order_failed_reads_as_triggered_with_the_reason_and_no_order(broker, sim):
    reason = "Your order price is lower than the current lower circuit limit of 975.50."
    sim.fail_next("gtt.trigger", "failed", message=reason)
    gtt_id = broker.place_gtt(oco())
    sim.set_price("INFY", 974.0)

    expected = (GttOrderResult(leg=0, order_id=None, status="failed", rejection_reason=reason),)
    fired = broker.get_gtt(gtt_id)
    assert (fired.state, fired.results) == (GttState.TRIGGERED, expected)
    [listed] = broker.gtts()
    assert (listed.gtt_id, listed.state, listed.results) == (gtt_id, GttState.TRIGGERED, expected)
    assert broker.orders() == []


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (oco(stop=1001.0), "strictly between"),
        (oco(target=1002.0), "more than 0.25%"),
        (single(stop=998.0), "more than 0.25%"),
        (single(stop=975.02), "tick"),
    ],
    ids=["ltp-outside-triggers", "target-too-close", "stop-too-close", "off-tick"],
)
def test_a_gtt_breaking_kites_rules_never_reaches_kite(broker, sim, request_, words):
    with pytest.raises(InputRejected, match=words):
        broker.place_gtt(request_)
    gtt_id = broker.place_gtt(oco())
    with pytest.raises(InputRejected, match=words):
        broker.modify_gtt(gtt_id, request_)
    assert len(sim.requests_to("gtt.place")) == 1 and sim.requests_to("gtt.modify") == []


def test_an_order_breaking_the_rules_never_reaches_kite(broker, sim):
    with pytest.raises(InputRejected, match="tick"):
        broker.place_order(buy(order_type=OrderType.LIMIT, price=999.99))
    with pytest.raises(InputRejected, match="nothing to change"):
        broker.modify_order("1")
    assert sim.requests == []


# --- the expired token ------------------------------------------------------------------------


def test_an_expired_token_pauses_every_call_until_a_new_login(broker, sim, events):
    sim.expire_token()
    with pytest.raises(TokenExpired) as caught:
        broker.orders()
    assert sim.access_token not in caught.value.message
    assert len(sim.requests) == 1  # not retried
    assert broker.status().token_valid is False and events.token_validity == [False]
    sent = len(sim.requests)
    for call in (lambda: broker.place_order(buy()), lambda: broker.place_gtt(oco()),
                 broker.gtts, broker.margins, lambda: broker.delete_gtt(1)):  # fmt: skip
        with pytest.raises(TokenExpired, match="not sent"):
            call()
    assert len(sim.requests) == sent  # nothing reached Kite
    sim.renew_token("next-day-token")
    broker.set_access_token("next-day-token")
    assert broker.status().token_valid is True and events.token_validity == [False, True]
    assert broker.orders() == []


def test_a_token_fault_on_an_order_is_not_retried_and_places_nothing(broker, sim):
    sim.fail_next("order.place", "token")
    with pytest.raises(TokenExpired):
        broker.place_order(buy())
    assert sim.orders_placed() == [] and len(sim.requests) == 1
    with pytest.raises(TokenExpired):
        broker.orders()
    assert len(sim.requests) == 1
    broker.set_access_token(sim.access_token)
    assert broker.orders() == []


def test_a_broker_without_a_token_sends_nothing(sim):
    empty = KiteBroker(sim.api_key, "", root=sim.url)
    assert empty.status().token_valid is False
    with pytest.raises(TokenExpired):
        empty.orders()
    assert sim.requests == []


# --- the circuit breaker -------------------------------------------------------------------------


def test_the_circuit_opens_after_n_failures_and_closes_after_a_probe(make_broker, sim, clock,
                                                                       events):  # fmt: skip
    broker = make_broker(failure_threshold=3, cooldown_s=30.0, max_attempts=3)
    sim.fail_next("orders", "503", times=3)
    with pytest.raises(NetworkUnavailable):
        broker.orders()  # three sends, three failures
    assert broker.status().circuit == "open" and events.circuits[-1] == "open"
    with pytest.raises(CircuitOpen, match="orders"):
        broker.orders()
    with pytest.raises(CircuitOpen):
        broker.place_order(buy())
    assert len(sim.requests) == 3  # refused unsent
    clock.advance(30.0)
    assert broker.status().circuit == "half_open"
    assert broker.orders() == []  # the probe
    assert broker.status().circuit == "closed"
    assert [c for c in events.circuits if c != "closed"] == ["open", "half_open"]
    assert events.circuits[-1] == "closed"


def test_a_failed_probe_opens_the_circuit_again(make_broker, sim, clock):
    broker = make_broker(failure_threshold=2, cooldown_s=10.0, max_attempts=1)
    sim.fail_next("gtt", "502", times=3)
    for _ in range(2):
        with pytest.raises(NetworkUnavailable):
            broker.gtts()
    clock.advance(10.0)
    with pytest.raises(NetworkUnavailable):
        broker.gtts()  # the probe fails
    assert broker.status().circuit == "open"
    with pytest.raises(CircuitOpen):
        broker.gtts()


def test_rejections_do_not_open_the_circuit(make_broker, sim):
    broker = make_broker(failure_threshold=2)
    sim.fail_next("order.place", "order_exception", times=3)
    for n in range(3):
        with pytest.raises(OrderRejected):
            broker.place_order(buy(tag=f"L{n}"))
    assert broker.status().circuit == "closed"
    assert "place_order INFY" in broker.status().last_error


# --- rate limits ---------------------------------------------------------------------------------


def most_in_any_second(stamps: list[float]) -> int:
    return max(sum(1 for t in stamps if s <= t < s + 1.0 - 1e-9) for s in stamps)


def test_the_broker_never_sends_more_than_ten_requests_a_second(broker, sim):
    for _ in range(25):
        broker.orders()
    stamps = [r.at for r in sim.requests]
    assert len(stamps) == 25 and most_in_any_second(stamps) == 10


def test_quotes_go_at_one_a_second(broker, sim, clock):
    for _ in range(3):
        broker.ltp(["INFY"])
    stamps = [r.at for r in sim.requests_to("quote.ltp")]
    assert [b - a for a, b in zip(stamps, stamps[1:], strict=False)] == pytest.approx([1.0, 1.0])


def test_the_history_fetch_and_the_broker_share_one_allowance(broker, sim, market_store):
    instruments = InstrumentMap.from_kite(sim.client().instruments("NSE"))

    def between_windows(done: int, total: int) -> None:
        for _ in range(4):  # the broker's own calls, spending the same allowance
            broker.orders()

    fetch_history(
        sim.client(), market_store, instruments, ["INFY", "TCS"], Timeframe.D1,
        date(2000, 1, 1), date(2026, 1, 1), between_windows, broker.limits.historical,
        now=lambda: datetime(2026, 11, 1, tzinfo=UTC),
    )  # fmt: skip
    historical = [r.at for r in sim.requests_to("historical")]
    assert len(historical) == 10
    assert most_in_any_second(historical) <= 3
    assert most_in_any_second([r.at for r in sim.requests if r.route != "instruments"]) == 10


# --- order updates by polling -------------------------------------------------------------------


def test_polling_emits_each_new_order_state_once(broker, sim):
    updates: queue.Queue[OrderUpdate] = queue.Queue()
    broker.on_order_update(updates.put)
    order = broker.place_order(sell(order_type=OrderType.LIMIT, price=1010.0))
    broker.start_polling(interval_s=0.05)
    assert broker.status().detail["polling"] is True
    first = updates.get(timeout=WAIT_S)
    assert (first.order.order_id, first.order.state, first.source) == (
        order.order_id, OrderState.OPEN, "poll"
    )  # fmt: skip
    sim.set_price("INFY", 1010.0)
    filled = updates.get(timeout=WAIT_S)
    assert (filled.order.state, filled.order.filled_quantity) == (OrderState.FILLED, 3)
    # The same fill from a postback is not news.
    assert broker.ingest_order_update(sim.order_updates[-1], source="postback") is None
    broker.stop()
    assert broker.status().detail["polling"] is False
    assert updates.empty()
