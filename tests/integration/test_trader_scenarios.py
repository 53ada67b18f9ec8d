"""STRATEGY.md through the engine: the Trader against the real PaperBroker, prices and seconds in,
the exact legs, stops, GTT calls, orders and exits out (tests/trading_rig.py, one thread)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.trader_scenario_support import (
    HOLIDAY,
    NO_ADDS,
    START,
    buys,
    calls_since,
    flat,
    ist,
    leg_row,
    legs,
    live,
    opened,
    resting_exit,
    sells,
    uptrend,
)
from tests.trading_rig import make_rig, rig_params
from Webapp.broker.base import GttState, OrderType, Side
from Webapp.config.params import LegParams
from Webapp.execution import gateway as gw
from Webapp.states import ExitReason, GttIntentState, LegState
from Webapp.strategy.actions import SkipReason


@pytest.fixture
def rig(tmp_path):
    r = make_rig(tmp_path / "app.db", start=START)
    r.start()
    return r


def reason(rig, symbol: str) -> str:
    return rig.trader.signals[symbol].reason


# --- 1. the scan opens P1 (STRATEGY.md "Entry: the momentum signal") -------------------------


@pytest.fixture
def scan_rig(tmp_path, market_store):
    """INFY (previous close 1000) and TCS (500) in an uptrend, ITC flat at 400; started."""
    uptrend(market_store, "INFY", 1000.0)
    uptrend(market_store, "TCS", 500.0)
    flat(market_store, "ITC", 400.0)

    def make(params=None, start=START):
        rig = make_rig(
            tmp_path / "app.db",
            params or rig_params(),
            universe=("INFY", "TCS", "ITC"),
            ohlcv=market_store,
            start=start,
        )
        rig.start()
        return rig

    return make


def test_the_scan_opens_p1_for_every_uptrend_in_range_best_day_change_first(scan_rig):
    rig = scan_rig()
    rig.tick("INFY", 1020.0)  # +2%
    rig.tick("TCS", 515.0)  # +3%
    rig.tick("ITC", 408.0)  # +2%, but flat: no trend
    rig.wait(1)  # the first scan
    assert buys(rig) == [("TCS", 5), ("INFY", 2)]  # floor(3000/515), floor(3000/1020)
    assert reason(rig, "ITC") == SkipReason.TREND
    assert rig.trader.signals["TCS"].state == rig.trader.signals["INFY"].state == "entered"
    assert legs(rig, "TCS") == [(1, LegState.OPEN, None)]
    assert legs(rig, "INFY") == [(1, LegState.OPEN, None)]
    assert len(rig.sent(gw.PlaceGtt)) == 2


def test_max_new_ladders_per_scan_opens_only_the_best(scan_rig):
    rig = scan_rig(rig_params(max_new_ladders_per_scan=1))
    rig.tick("INFY", 1020.0)
    rig.tick("TCS", 515.0)
    rig.wait(1)
    assert buys(rig) == [("TCS", 5)]
    assert reason(rig, "INFY") == SkipReason.SCAN_CAP
    assert "INFY" not in rig.trader.ladders


# INFY's price (previous close 1000), its tick's age at the scan, and a P1 qty or the skip.
ENTRY_CONDITIONS = [
    pytest.param(1010.0, 1, 2, id="day change exactly 1%"),
    pytest.param(1009.9, 1, SkipReason.DAY_CHANGE_LOW, id="day change under 1%"),
    pytest.param(1050.0, 1, 2, id="day change exactly 5%"),
    pytest.param(1050.5, 1, SkipReason.DAY_CHANGE_HIGH, id="day change over 5%"),
    pytest.param(1020.0, 9, 2, id="tick 9 s old"),
    pytest.param(1020.0, 10, SkipReason.STALE, id="tick stale_after_s (10 s) old"),
]


@pytest.mark.parametrize(("price", "age", "expect"), ENTRY_CONDITIONS)
def test_each_entry_condition_alone_decides_the_scan(scan_rig, price, age, expect):
    rig = scan_rig()
    rig.tick("INFY", price)
    rig.clock.advance(timedelta(seconds=age - 1))
    rig.wait(1)  # the first scan, `age` seconds after the tick
    if isinstance(expect, SkipReason):
        assert reason(rig, "INFY") == expect
        assert buys(rig) == []
    else:
        assert buys(rig) == [("INFY", expect)]


def test_a_symbol_without_history_is_skipped_and_says_so(tmp_path, market_store):
    uptrend(market_store, "INFY", 1000.0)
    rig = make_rig(tmp_path / "app.db", universe=("INFY", "WIPRO"), ohlcv=market_store, start=START)
    rig.start()
    rig.tick("INFY", 1020.0)
    rig.tick("WIPRO", 306.0)
    rig.wait(1)
    assert reason(rig, "WIPRO") == SkipReason.NO_HISTORY
    assert buys(rig) == [("INFY", 2)]


# The entry window is 09:30 (included) to 15:00 (excluded), IST, on trading days.
WINDOW = [
    pytest.param(ist(9, 29, 59), SkipReason.OUTSIDE_WINDOW, id="09:29:59 closed"),
    pytest.param(ist(9, 30), None, id="09:30:00 open"),
    pytest.param(ist(14, 59, 59), None, id="14:59:59 open"),
    pytest.param(ist(15, 0), SkipReason.OUTSIDE_WINDOW, id="15:00:00 closed"),
    pytest.param(HOLIDAY, SkipReason.NOT_TRADING_DAY, id="10:00 on a holiday"),
]


@pytest.mark.parametrize(("scan_at", "skip"), WINDOW)
def test_new_ladders_open_only_inside_the_entry_window(scan_rig, scan_at, skip):
    rig = scan_rig(start=scan_at - timedelta(seconds=2))
    rig.tick("INFY", 1020.0)
    rig.wait(1)
    assert rig.clock.now() == scan_at
    if skip is None:
        assert buys(rig) == [("INFY", 2)]
    else:
        assert buys(rig) == []
        assert reason(rig, "INFY") == skip


# --- 2. the ladder: P2, P3, no leg after a stop-out, cooldown ---------------------------------


def gtt_terms(rig) -> list[tuple[tuple[float, ...], tuple[float, ...], int]]:
    """(triggers, LIMIT prices, qty) of every GTT placed, in order."""
    return [(r.gtt.triggers, r.gtt.limit_prices, r.gtt.quantity) for r in rig.sent(gw.PlaceGtt)]


def test_p2_then_p3_join_exactly_at_their_triggers(rig):
    opened(rig)  # P1: 3 @ 1000.50 (market buy +5 bps)
    rig.tick("INFY", 1003.00)  # < 1000.50 x 1.0025 = 1003.00125
    assert buys(rig) == [("INFY", 3)]
    rig.tick("INFY", 1003.05)  # P2: floor(3000 / 1003.05) = 2, fills at 1003.60
    assert buys(rig) == [("INFY", 3), ("INFY", 2)]
    rig.tick("INFY", 1011.75)  # < avg (3 x 1000.50 + 2 x 1003.60) / 5 = 1001.74, x 1.01 = 1011.7574
    assert len(buys(rig)) == 2
    rig.tick("INFY", 1011.80)  # P3: 2, fills at 1012.35
    assert buys(rig) == [("INFY", 3), ("INFY", 2), ("INFY", 2)]
    rows = rig.rows("INFY")
    assert [(t.position_number, t.status, t.qty, t.entry_price) for t in rows] == [
        (1, LegState.OPEN, 3, 1000.50),
        (2, LegState.OPEN, 2, 1003.60),
        (3, LegState.OPEN, 2, 1012.35),
    ]
    assert [t.target_pct for t in rows] == [5.0, None, None]  # P2, P3 are runners
    assert gtt_terms(rig) == [
        ((975.45, 1050.55), (970.55, 1045.25), 3),  # OCO: stop 975.4875 down, target up
        ((978.50,), (973.60,), 2),  # 1003.60 x 0.975 = 978.51
        ((961.70,), (956.85,), 2),  # 1012.35 x 0.95 = 961.7325
    ]
    rig.tick("INFY", 1030.0)
    assert len(buys(rig)) == 3  # each leg at most once


def test_no_leg_after_a_stop_out_even_when_the_price_rises_again(tmp_path):
    # P2 trails 1% under its high, so its stop is hit while P1 (2.5%) stays open.
    rig = make_rig(
        tmp_path / "app.db", rig_params(p2=LegParams(trigger_pct=0.25, sl_pct=1.0)), start=START
    )
    rig.start()
    opened(rig)
    rig.tick("INFY", 1003.05)  # P2: 2 @ 1003.60, stop 993.564, GTT trigger 993.55
    rig.tick("INFY", 993.56)  # the engine's stop, above the GTT trigger
    assert legs(rig) == [(1, LegState.OPEN, None), (2, LegState.CLOSED, ExitReason.STOP_ENGINE)]
    assert rig.trader.ladders["INFY"].ladder.stopped_out
    for price in (1004.0, 1012.0, 1020.0):  # past P2's and P3's triggers again
        rig.tick("INFY", price)
    assert buys(rig) == [("INFY", 3), ("INFY", 2)]
    assert legs(rig) == [(1, LegState.OPEN, None), (2, LegState.CLOSED, ExitReason.STOP_ENGINE)]


def test_a_closed_ladder_cools_down_before_the_scan_opens_it_again(tmp_path, market_store):
    uptrend(market_store, "INFY", 1000.0)
    rig = make_rig(
        tmp_path / "app.db",
        rig_params(cooldown_minutes=2),
        ohlcv=market_store,
        start=START,
    )
    rig.start()
    live(rig, {"INFY": 1020.0}, 1)  # 10:00:01 scan: P1 2 @ 1020.55, GTT stop 995.00
    rig.tick("INFY", 990.0)  # 10:00:02: through the GTT; its LIMIT 990.00 fills
    assert legs(rig) == [(1, LegState.CLOSED, ExitReason.STOP_GTT)]
    assert rig.trader.last_closed["INFY"] == ist(10, 0, 2)
    live(rig, {"INFY": 1020.0}, 119)  # scans at 10:01:01 and 10:02:01, cooling until 10:02:02
    assert rig.clock.now() == ist(10, 2, 1)
    assert reason(rig, "INFY") == SkipReason.COOLDOWN
    assert buys(rig) == [("INFY", 2)]
    live(rig, {"INFY": 1020.0}, 60)  # 10:03:01: the first scan after the cooldown
    assert buys(rig) == [("INFY", 2), ("INFY", 2)]
    assert rig.trader.ladders["INFY"].ladder.opened_at == ist(10, 3, 1)


# --- 3. limits: caps and the daily loss, checked before every new leg -------------------------


CAPS = [
    pytest.param({"max_positions": 1}, SkipReason.MAX_POSITIONS, id="max_positions 1"),
    # P1 holds 3 x 1000.50 = 3001.50; P2 would add 2 x 1003.05 = 2006.10
    pytest.param({"total_capital": 5000}, SkipReason.TOTAL_CAPITAL, id="total_capital 5000"),
]


@pytest.mark.parametrize(("updates", "skip"), CAPS)
def test_a_cap_refuses_p2_and_says_why(tmp_path, updates, skip):
    rig = make_rig(tmp_path / "app.db", rig_params(**updates), start=START)
    rig.start()
    opened(rig)
    rig.tick("INFY", 1003.05)  # P2's trigger
    assert buys(rig) == [("INFY", 3)]
    signal = rig.trader.signals["INFY"]
    assert (signal.reason, signal.detail[:3]) == (skip, "P2:")
    assert legs(rig) == [(1, LegState.OPEN, None)]


def test_after_the_daily_loss_limit_no_entries_but_open_legs_keep_their_stops(tmp_path):
    rig = make_rig(
        tmp_path / "app.db",
        rig_params(max_daily_loss=50),
        universe=("INFY", "TCS", "ITC"),
        start=START,
    )
    rig.start()
    opened(rig, "INFY")
    opened(rig, "TCS")
    assert not rig.trader.build_view().day.loss_limit_hit
    rig.tick("TCS", 975.0)  # through TCS's GTT (975.45): sold at 974.50, 3 x -26 = -78 gross
    assert legs(rig, "TCS") == [(1, LegState.CLOSED, ExitReason.STOP_GTT)]
    view = rig.trader.build_view()
    assert view.day.realised == -78.0
    assert view.day.net < -50 and view.day.loss_limit_hit
    rig.tick("INFY", 1004.0)  # P2's trigger (1003.00), but entries have stopped for the day
    assert rig.trader.signals["INFY"].reason == SkipReason.DAILY_LOSS
    assert buys(rig) == [("INFY", 3), ("TCS", 3)]
    rig.wait(1)  # a scan: every symbol refused for the day
    assert {s.reason for s in rig.trader.build_view().signals} == {SkipReason.DAILY_LOSS}
    # INFY keeps its GTT at the broker and its trailing stop, and the stop still sells.
    (infy_gtt,) = rig.gtts("INFY")
    assert rig.broker.get_gtt(infy_gtt.broker_gtt_id).state is GttState.ACTIVE
    assert leg_row(rig, 1, "INFY").stop_loss == pytest.approx(1004.0 * 0.975)  # 978.90
    rig.tick("INFY", 978.80)
    assert legs(rig, "INFY") == [(1, LegState.CLOSED, ExitReason.STOP_ENGINE)]
    assert buys(rig) == [("INFY", 3), ("TCS", 3)]


# --- 4. the trailing stop and its GTT modifications --------------------------------------------


def modified(rig) -> list[tuple[float, ...]]:
    """The triggers of every ModifyGtt sent, in order."""
    return [r.gtt.triggers for r in rig.sent(gw.ModifyGtt)]


def engine_stop(rig, position: int = 1) -> float:
    return rig.trader.ladders["INFY"].leg(position).stop


def test_the_gtt_follows_the_stop_by_step_and_interval_never_too_close_to_the_ltp(tmp_path):
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    rig.start()
    opened(rig)  # 10:00:01: P1 3 @ 1000.50, GTT [975.45, 1050.55] placed now
    (gtt,) = rig.gtts("INFY")
    # (seconds later, price, engine stop after it, every ModifyGtt's triggers so far)
    steps = [
        (1, 1006.0, 980.85, []),  # stop 980.85 >= 975.45 x 1.005, but 1 s < min_interval_s
        (58, 1006.0, 980.85, []),  # 59 s after the placement
        (1, 1006.0, 980.85, [(980.85, 1050.55)]),  # 60 s: modified
        (1, 1010.0, 984.75, [(980.85, 1050.55)]),  # 984.75 < 980.85 x 1.005 = 985.75
        (1, 1012.0, 986.70, [(980.85, 1050.55)]),  # step met, 2 s after the modify
        (57, 1012.0, 986.70, [(980.85, 1050.55)]),  # 59 s after the modify
        (1, 988.0, 986.70, [(980.85, 1050.55)]),  # 60 s, but 986.70 is 0.13% under 988
        (1, 989.2, 986.70, [(980.85, 1050.55), (986.70, 1050.55)]),  # 0.2527%: modified
        (60, 1000.0, 986.70, [(980.85, 1050.55), (986.70, 1050.55)]),  # the stop never falls
    ]
    for n, (seconds, price, stop, sent) in enumerate(steps):
        rig.tick("INFY", price, seconds=seconds)
        assert (engine_stop(rig), modified(rig)) == (pytest.approx(stop), sent), f"step {n}"
    (row,) = rig.gtts("INFY")
    assert (row.id, row.state, row.triggers) == (gtt.id, GttIntentState.ACTIVE, [986.70, 1050.55])
    assert row.limit_prices == [981.75, 1045.25]  # trigger x 0.995, rounded down
    assert rig.broker.get_gtt(gtt.broker_gtt_id).triggers == (986.70, 1050.55)
    assert not rig.sent(gw.DeleteGtt) and len(rig.sent(gw.PlaceGtt)) == 1  # modify, never replace
    rig.wait(1)  # the stop is written at most once a second
    assert leg_row(rig, 1).stop_loss == pytest.approx(986.70)
    assert leg_row(rig, 1).high == 1012.0


def test_each_runner_trails_its_own_gtt(rig):
    opened(rig)
    rig.tick("INFY", 1003.05)  # P2 2 @ 1003.60, GTT [978.50] at 10:00:02
    rig.tick("INFY", 1010.0, seconds=60)  # 10:01:02: P1's GTT is 61 s old, P2's 60 s
    assert modified(rig) == [(984.75, 1050.55), (984.75,)]
    assert [g.triggers for g in rig.gtts("INFY")] == [[984.75, 1050.55], [984.75]]


# --- 5. the engine's stop racing the GTT -------------------------------------------------------


def test_engine_stop_above_the_gtt_deletes_it_then_sells_once_at_limit(tmp_path):
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    rig.start()
    opened(rig)  # GTT [975.45, 1050.55]
    (gtt,) = rig.gtts("INFY")
    rig.tick("INFY", 1010.0)  # stop 984.75; the GTT may not move for 60 s
    before = len(rig.gateway.sent)
    rig.tick("INFY", 984.50)  # <= the engine's stop, well above the GTT's 975.45
    assert calls_since(rig, before) == [
        "DeleteGtt",
        "PlaceOrder",
    ]  # delete confirmed ACTIVE, then sell
    (sell,) = sells(rig)
    assert (sell.order.order_type, sell.order.price, sell.order.quantity) == (
        OrderType.LIMIT,
        979.55,  # 984.50 x (1 - 0.5%) rounded down
        3,
    )
    (row,) = rig.rows("INFY")
    assert (row.status, row.exit_reason, row.exit_price) == (
        LegState.CLOSED,
        ExitReason.STOP_ENGINE,
        984.0,  # the LIMIT fills at max(979.55, 984.50 - 5 bps), tick down
    )
    assert rig.gtts("INFY")[0].state == GttIntentState.DELETED
    assert rig.broker.get_gtt(gtt.broker_gtt_id).state is GttState.DELETED
    assert [(o.side, o.purpose, o.state) for o in rig.orders("INFY")] == [
        ("BUY", "entry", "filled"),
        ("SELL", "exit", "filled"),
    ]
    rig.tick("INFY", 970.0)
    assert len(sells(rig)) == 1 and not rig.trader.ladders


def test_a_gap_through_the_gtt_is_sold_by_the_gtt_alone(tmp_path):
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    rig.start()
    opened(rig)
    (gtt,) = rig.gtts("INFY")
    rig.tick("INFY", 970.0)  # gaps under 975.45: the GTT fires first, its LIMIT 970.55 rests
    assert rig.broker.get_gtt(gtt.broker_gtt_id).state is GttState.TRIGGERED
    # Step 1 applied the trigger before the rules: the engine's stop never raced the GTT.
    assert rig.sent(gw.DeleteGtt) == []
    assert sells(rig) == []
    (row,) = rig.rows("INFY")
    assert (row.status, row.exit_reason) == (LegState.PENDING_EXIT, ExitReason.STOP_GTT)
    rig.tick("INFY", 971.0)  # the GTT's LIMIT fills at max(970.55, 971 - 5 bps)
    (row,) = rig.rows("INFY")
    assert (row.status, row.exit_reason, row.exit_price) == (
        LegState.CLOSED,
        ExitReason.STOP_GTT,
        970.55,
    )
    broker_sells = [o for o in rig.broker.orders() if o.side is Side.SELL]
    assert [(o.quantity, o.tag) for o in broker_sells] == [(3, None)]  # the GTT's order only
    rig.wait(60)
    assert sells(rig) == [] and not rig.sent(gw.ModifyOrder) and not rig.trader.ladders


# --- 6. an exit LIMIT that cannot fill becomes MARKET after exit_timeout_s ---------------------


def test_an_exit_limit_still_open_after_exit_timeout_s_becomes_a_market_order(tmp_path):
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    rig.start()
    opened(rig)
    rig.tick("INFY", 1010.0)  # stop 984.75
    resting_exit(rig, decided_at=984.50, broker_sees=978.0)  # LIMIT 979.55 > 978: it rests
    (sell,) = sells(rig)
    assert (sell.order.order_type, sell.order.price) == (OrderType.LIMIT, 979.55)
    assert leg_row(rig, 1).status == LegState.PENDING_EXIT
    rig.wait(29)  # no prices meanwhile
    assert rig.sent(gw.ModifyOrder) == []
    rig.wait(1)  # exit_timeout_s (30) after the sell
    (modify,) = rig.sent(gw.ModifyOrder)
    assert (modify.order_type, modify.price) == (OrderType.MARKET, None)
    row = leg_row(rig, 1)
    assert (row.status, row.exit_reason, row.exit_price) == (
        LegState.CLOSED,
        ExitReason.STOP_ENGINE,
        977.5,  # market: 978 - 5 bps, tick down
    )
    (_, sell_row) = rig.orders("INFY")
    assert (sell_row.tag, sell_row.state, sell_row.average_price) == (
        sell.order.tag,
        "filled",
        977.5,
    )
    assert len(sells(rig)) == 1


def test_exit_timeout_with_prices_still_arriving_sells_once(tmp_path):
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    rig.start()
    opened(rig)
    rig.tick("INFY", 1010.0)
    resting_exit(rig, decided_at=984.50, broker_sees=978.0)
    live(rig, {"INFY": 978.0}, 29)  # the feed goes on, under the LIMIT
    assert leg_row(rig, 1).status == LegState.PENDING_EXIT
    live(rig, {"INFY": 978.0}, 1)  # 30 s: the broker's own timeout and the engine's meet
    row = leg_row(rig, 1)
    assert (row.status, row.exit_price) == (LegState.CLOSED, 977.5)
    assert len(sells(rig)) == 1
    assert [o.side for o in rig.broker.orders()] == [Side.BUY, Side.SELL]
    assert not rig.trader.ladders and rig.trader.state.value == "running"
