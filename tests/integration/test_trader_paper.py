"""The trader against the paper broker, one thread, simulated time: whole ladders end to end."""

from __future__ import annotations

import pytest

from tests.trading_rig import make_rig
from Webapp.broker.base import OrderRequest, OrderType, Side
from Webapp.execution import gateway as gw
from Webapp.states import ExitReason, GttIntentState, LegState


@pytest.fixture
def rig(tmp_path):
    r = make_rig(tmp_path / "app.db")
    r.start()
    return r


def test_p1_fills_and_is_protected_by_an_oco_gtt(rig):
    rig.tick("INFY", 1000.0)
    rig.buy("INFY", 3, 1000.0)
    (leg,) = rig.rows("INFY")
    assert leg.status == LegState.OPEN
    assert leg.entry_price == 1000.5  # 5 bps slippage, rounded up to the tick
    (gtt,) = rig.gtts("INFY")
    assert gtt.state == GttIntentState.ACTIVE
    assert gtt.triggers == [975.45, 1050.55]  # stop 975.4875 down, target 1050.525 up
    assert [type(r).__name__ for r in rig.gateway.sent] == [
        "ReconcileOrders",
        "ReconcileGtts",
        "ReconcilePositions",
        "ReconcileHoldings",
        "PlaceOrder",
        "PlaceGtt",
    ]


def test_a_full_ladder_then_the_gtt_stops_it_out_and_it_cools_down(rig):
    rig.tick("INFY", 1000.0)
    rig.buy("INFY", 3, 1000.0)
    rig.tick("INFY", 1004.0)  # ≥ 1000.5 × 1.0025 = 1003.00: P2
    rig.tick("INFY", 1014.0)  # ≥ avg(P1,P2) × 1.01: P3
    legs = rig.rows("INFY")
    assert [(g.position_number, g.status) for g in legs] == [(1, "open"), (2, "open"), (3, "open")]
    rig.tick("INFY", 900.0)  # gaps through every stop: the GTTs fire, their LIMITs rest
    assert {g.state for g in rig.gtts("INFY")} == {GttIntentState.TRIGGERED.value}
    assert {g.status for g in rig.rows("INFY")} == {LegState.PENDING_EXIT.value}
    # Step 1 applied the triggers before the rules: the engine's stop did not race them.
    assert rig.sent(gw.DeleteGtt) == [] and len(rig.sent(gw.PlaceOrder)) == 3
    rig.wait(29)
    assert not rig.sent(gw.ModifyOrder)
    rig.wait(1)  # exit_timeout_s: the GTTs' resting LIMIT sells become MARKET orders
    assert len(rig.sent(gw.ModifyOrder)) == 3
    legs = rig.rows("INFY")
    assert {g.status for g in legs} == {LegState.CLOSED.value}
    assert {g.exit_reason for g in legs} == {ExitReason.STOP_GTT.value}
    assert [g.exit_price for g in legs] == [899.55] * 3  # market, 5 bps under 900, tick down
    assert len(rig.sent(gw.PlaceOrder)) == 3  # never sold by us: the GTTs' orders did
    assert not rig.trader.ladders and "INFY" in rig.trader.last_closed


def test_a_filled_buy_of_ours_with_no_leg_row_is_adopted_on_start_and_protected(tmp_path):
    rig = make_rig(tmp_path / "app.db")
    rig.store.update("INFY", 1000.0)
    rig.broker.on_price("INFY", 1000.0)
    # Our tag, filled at the broker, but the app DB lost the leg (say, a restored backup).
    rig.broker.place_order(OrderRequest("INFY", Side.BUY, 3, OrderType.MARKET, "E0123456789abcdef"))
    rig.start()
    (leg,) = rig.rows("INFY")
    assert (leg.position_number, leg.qty, leg.entry_price) == (1, 3, 1000.5)
    assert any("had no leg" in e.message for e in rig.trader.errors)
    rig.tick("INFY", 1001.0)  # the first price places its GTT
    (leg,) = rig.rows("INFY")
    assert leg.status == LegState.OPEN
    assert [g.state for g in rig.gtts("INFY")] == [GttIntentState.ACTIVE.value]
