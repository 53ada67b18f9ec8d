"""A GTT fired at the paper exchange: its results come before the rules (STRATEGY.md "Order of
work" step 1), and a fired GTT whose sell the broker refused is sold by the engine, once."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.trader_scenario_support import NO_ADDS, START, buys, legs, opened, sells
from tests.trading_rig import make_rig
from Webapp.broker.base import GttState, OrderType
from Webapp.execution import gateway as gw
from Webapp.states import ExitReason, GttIntentState, LegState
from Webapp.storage import audit


def test_no_leg_is_added_on_the_price_that_sells_p1_at_its_target(tmp_path):
    rig = make_rig(tmp_path / "app.db", start=START)
    rig.start()
    opened(rig)  # P1 3 @ 1000.50, GTT [975.45, 1050.55]; P2 would join from 1003.0
    rig.tick("INFY", 1051.0)  # crosses the target trigger: step 1 sells P1 by its GTT
    assert buys(rig) == [("INFY", 3)]  # P1 only: no P2 bought at the top
    assert legs(rig) == [(1, LegState.CLOSED, ExitReason.TARGET)]
    assert not rig.sent(gw.DeleteGtt)  # the rules never saw P1 open on that price
    assert not rig.trader.ladders


def test_a_gtt_stop_fired_at_the_exchange_is_not_raced_by_the_engine_stop(tmp_path):
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    rig.start()
    opened(rig)  # GTT [975.45, 1050.55]
    rig.tick("INFY", 975.0)  # fires the stop; its LIMIT 970.55 fills at 974.5
    assert not rig.sent(gw.DeleteGtt) and sells(rig) == []
    (row,) = rig.rows("INFY")
    assert (row.status, row.exit_reason, row.exit_price) == (
        LegState.CLOSED,
        ExitReason.STOP_GTT,
        974.5,
    )


def test_a_fired_gtt_whose_sell_is_refused_is_shown_and_sold_at_market_once(tmp_path):
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    rig.start()
    opened(rig)  # GTT [975.45, 1050.55]: its stop LIMIT sells at 970.55
    rig.broker.set_circuit_band("INFY", 972.0, 1188.0)  # 970.55 is under the lower circuit
    (gtt,) = rig.gtts("INFY")
    listings = len(rig.sent(gw.ReconcileGtts))  # the start's reconciliation listed them
    rig.tick("INFY", 974.0)
    fired = rig.broker.get_gtt(gtt.broker_gtt_id)
    assert fired.state is GttState.TRIGGERED
    assert (fired.results[0].status, fired.results[0].order_id) == ("failed", None)
    (sell,) = sells(rig)
    assert (sell.order.order_type, sell.order.quantity) == (OrderType.MARKET, 3)
    (row,) = rig.rows("INFY")
    assert (row.status, row.exit_reason, row.exit_price) == (
        LegState.CLOSED,
        ExitReason.STOP_GTT,
        973.5,  # MARKET: 974 - 5 bps, down to the tick
    )
    (gtt_row,) = rig.gtts("INFY")
    assert gtt_row.state == GttIntentState.DELETED
    assert "lower circuit limit of 972.00" in (gtt_row.status_message or "")
    assert any("lower circuit limit" in e.message for e in rig.trader.errors)
    rig.tick("INFY", 973.0)
    rig.wait(60)
    assert len(sells(rig)) == 1
    assert len(rig.sent(gw.ReconcileGtts)) == listings  # no endless GTT listing
    assert rig.trader.state.value == "running"


def test_a_gtt_whose_sell_was_refused_while_the_app_was_down_is_sold_on_start(tmp_path):
    first = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    first.start()
    opened(first)  # GTT [975.45, 1050.55]
    # The app is down; the exchange fires the GTT and refuses its sell (circuit band).
    first.broker.set_circuit_band("INFY", 972.0, 1188.0)
    first.broker.on_price("INFY", 974.0, START + timedelta(minutes=5))
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START + timedelta(minutes=10))
    rig.start()  # reconciles: the GTT triggered, its order failed
    rig.tick("INFY", 974.0)  # a price known: still a MARKET sell, as decided
    rig.wait(1)  # trading: the engine sells the unprotected leg at market
    (sell,) = sells(rig)
    assert (sell.order.order_type, sell.order.quantity) == (OrderType.MARKET, 3)
    (row,) = rig.rows("INFY")
    assert (row.status, row.exit_reason, row.exit_price) == (
        LegState.CLOSED,
        ExitReason.STOP_GTT,
        973.5,
    )
    assert any("lower circuit limit" in e.message for e in rig.trader.errors)
    rig.wait(30)
    assert len(sells(rig)) == 1


def test_a_leg_sold_by_its_gtt_while_the_app_was_down_closes_at_the_brokers_fill_time(tmp_path):
    first = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    first.start()
    opened(first)  # GTT [975.45, 1050.55]
    sold_at = START + timedelta(minutes=5)
    first.broker.on_price("INFY", 975.0, sold_at)  # the app is down: the GTT sells at 974.50
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START + timedelta(minutes=10))
    rig.start()
    (row,) = rig.rows("INFY")
    assert (row.status, row.exit_reason, row.exit_price) == (
        LegState.CLOSED,
        ExitReason.STOP_GTT,
        974.5,
    )
    assert row.exit_time == sold_at  # the broker's fill, not the restart
    (order,) = [o for o in rig.trader.orders_log if o.side == "SELL"]
    assert order.at == sold_at
    # What reconciliation did is shown leg by leg, and kept in the audit log.
    note = "INFY P1: sold while the app was away, 3 at 974.50 on 25 Nov 10:05:00 IST (stop_gtt)"
    view = rig.trader.build_view()
    assert view.reconciled == (note,)
    assert view.detail.endswith("; 1 leg settled (listed below)")
    with rig.sessions() as s:
        (entry,) = [e for e in audit.recent(s) if e.action == "engine_reconcile"]
    assert entry.detail["message"] == note
