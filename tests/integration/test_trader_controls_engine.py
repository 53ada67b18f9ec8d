"""The engine's controls against the real PaperBroker: emergency stop, reload, pause, stop and
start, a refused buy. Prices and seconds in; the exact legs, GTT calls, orders and state out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.integration.trader_scenario_support import (
    NO_ADDS,
    START,
    buys,
    calls_since,
    legs,
    live,
    opened,
    resting_exit,
    sells,
    uptrend,
)
from tests.trading_rig import SHIPPED, make_rig, rig_params
from Webapp.broker.base import GttState, OrderType
from Webapp.broker.paper import PaperBroker
from Webapp.config.params import parse_params_text
from Webapp.execution import gateway as gw
from Webapp.execution.commands import CommandKind
from Webapp.execution.trading_view import TradingState
from Webapp.states import ExitReason, GttIntentState, LadderState, LegState
from Webapp.storage import audit, migrate, param_versions
from Webapp.storage.db import make_engine, make_session_factory
from Webapp.storage.trading_models import Ladder as LadderRow
from Webapp.strategy.actions import SkipReason


@pytest.fixture
def rig(tmp_path):
    r = make_rig(tmp_path / "app.db", start=START)
    r.start()
    return r


def result(cmd) -> tuple[bool, str]:
    answer = cmd.wait(0)
    assert answer is not None, "the command was not answered"
    return answer.ok, answer.message


def audited(rig) -> list[tuple[str, str, bool]]:
    """(actor, action, ok) of every audit entry, oldest first."""
    with rig.sessions() as s:
        return [(e.actor, e.action, e.detail["ok"]) for e in reversed(audit.recent(s))]


def full_ladder(rig) -> None:
    """P1 3 @ 1000.50, P2 2 @ 1003.60, P3 2 @ 1012.35, each with its GTT."""
    opened(rig)
    rig.tick("INFY", 1003.05)
    rig.tick("INFY", 1011.80)
    assert [n for n, status, _ in legs(rig) if status == LegState.OPEN] == [1, 2, 3]


# --- 7. emergency stop ---------------------------------------------------------------------------


def test_emergency_stop_with_the_feed_down_cancels_every_gtt_and_sells_every_leg(rig):
    full_ladder(rig)
    gtt_ids = [g.broker_gtt_id for g in rig.gtts("INFY")]
    before = len(rig.gateway.sent)
    rig.clock.advance(timedelta(minutes=5))  # the feed went quiet: no price since
    cmd = rig.command(CommandKind.EMERGENCY, "alice")
    assert result(cmd) == (True, "closing 3 legs at market")
    sent = rig.gateway.sent[before:]
    assert sorted(r.gtt_id for r in sent if isinstance(r, gw.DeleteGtt)) == sorted(gtt_ids)
    assert sorted((r.order.order_type, r.order.quantity) for r in sells(rig)) == [
        (OrderType.MARKET, 2),
        (OrderType.MARKET, 2),
        (OrderType.MARKET, 3),
    ]
    assert {rig.broker.get_gtt(i).state for i in gtt_ids} == {GttState.DELETED}
    assert {g.state for g in rig.gtts("INFY")} == {GttIntentState.DELETED}
    assert legs(rig) == [(n, LegState.CLOSED, ExitReason.EMERGENCY) for n in (1, 2, 3)]
    assert {t.exit_price for t in rig.rows("INFY")} == {1011.25}  # 1011.80 - 5 bps, tick down
    sell_rows = [o for o in rig.orders("INFY") if o.side == "SELL"]
    assert [(o.purpose, o.order_type, o.state) for o in sell_rows] == [
        ("emergency", "MARKET", "filled")
    ] * 3
    assert rig.trader.state is TradingState.STOPPED
    assert rig.trader.detail.startswith("emergency stop completed")
    assert not rig.trader.ladders
    assert audited(rig)[-1] == ("alice", "engine_emergency", True)
    after = len(rig.gateway.sent)
    rig.tick("INFY", 1020.0)
    rig.wait(61)
    assert len(rig.gateway.sent) == after  # stopped: nothing more


def test_emergency_stop_turns_a_resting_exit_limit_into_a_market_order(tmp_path):
    rig = make_rig(tmp_path / "app.db", NO_ADDS, start=START)
    rig.start()
    opened(rig)
    rig.tick("INFY", 1010.0)  # stop 984.75
    resting_exit(rig, decided_at=984.50, broker_sees=978.0)  # its LIMIT 979.55 rests
    (sell,) = sells(rig)
    assert sell.order.order_type is OrderType.LIMIT
    rig.wait(5)
    cmd = rig.command(CommandKind.EMERGENCY, "alice")
    assert result(cmd)[0]
    (modify,) = rig.sent(gw.ModifyOrder)  # 6 s after the sell, long before exit_timeout_s
    assert modify.order_type is OrderType.MARKET
    assert len(sells(rig)) == 1
    assert legs(rig) == [(1, LegState.CLOSED, ExitReason.STOP_ENGINE)]
    assert rig.trader.state is TradingState.STOPPED


def test_emergency_stop_works_on_a_stopped_engine(rig):
    opened(rig)
    assert result(rig.command(CommandKind.STOP, "alice"))[0]
    cmd = rig.command(CommandKind.EMERGENCY, "alice")
    assert result(cmd) == (True, "closing 1 leg at market")
    assert [type(r).__name__ for r in rig.gateway.sent[-2:]] == ["DeleteGtt", "PlaceOrder"]
    assert legs(rig) == [(1, LegState.CLOSED, ExitReason.EMERGENCY)]
    assert rig.trader.state is TradingState.STOPPED


def test_emergency_stop_after_a_restart_before_start_sells_the_legs_in_the_db(tmp_path):
    first = make_rig(tmp_path / "app.db", start=START)
    first.start()
    opened(first)
    first.tick("INFY", 1003.05)  # P1 and P2 open, each with its GTT
    gtt_ids = [g.broker_gtt_id for g in first.gtts("INFY")]
    # A new process on the same app DB and paper account, not started, no price yet.
    rig = make_rig(tmp_path / "app.db", start=START + timedelta(minutes=10))
    cmd = rig.command(CommandKind.EMERGENCY, "alice")
    assert result(cmd) == (True, "closing 2 legs at market")
    assert {rig.broker.get_gtt(i).state for i in gtt_ids} == {GttState.DELETED}
    # Paper cannot fill a MARKET order without any price: the engine sells again every 5 s.
    assert {status for _, status, _ in legs(rig)} == {LegState.PENDING_EXIT}
    assert "no last price known" in rig.trader.errors[0].message
    rig.wait(5)
    rig.tick("INFY", 1001.0)  # the feed is back
    rig.wait(5)
    assert legs(rig) == [(n, LegState.CLOSED, ExitReason.EMERGENCY) for n in (1, 2)]
    assert rig.trader.state is TradingState.STOPPED


# --- 8. reloading the parameters mid-session ---------------------------------------------------


def reloadable(rig) -> None:
    """The runtime's loader: the given YAML text, or param.yaml from disk when None."""

    def load(text):
        if text is None:
            text = SHIPPED.read_text(encoding="utf-8")
        return parse_params_text(text, "reloaded parameters"), text

    rig.trader._params_loader = load


SHIPPED_TEXT = SHIPPED.read_text(encoding="utf-8")
BIGGER = SHIPPED_TEXT.replace("capital_per_position: 3000", "capital_per_position: 6000")


def test_a_reload_applies_to_the_next_leg_and_a_bad_one_keeps_the_old_params(rig):
    reloadable(rig)
    opened(rig)  # P1: floor(3000 / 1000) = 3
    first = rig.command(CommandKind.RELOAD, "alice", note="as shipped")
    assert result(first) == (True, "parameters v1 applied")
    bigger = rig.command(CommandKind.RELOAD, "bob", params_text=BIGGER, note="double legs")
    assert result(bigger) == (True, "parameters v2 applied")
    assert rig.trader.params_version == 2
    rig.tick("INFY", 1003.05)  # P2: floor(6000 / 1003.05) = 5
    assert buys(rig) == [("INFY", 3), ("INFY", 5)]

    syntax = rig.command(CommandKind.RELOAD, "carol", params_text="p1: [unclosed\n")
    ok, message = result(syntax)
    assert not ok and message.startswith("parameters not changed:")
    assert "YAML syntax error" in message
    value = rig.command(
        CommandKind.RELOAD, "carol", params_text=BIGGER.replace("sl_pct: 2.5", "sl_pct: 0.1", 1)
    )
    ok, message = result(value)
    assert not ok and "p1.sl_pct" in message
    assert rig.trader.params.capital_per_position == 6000 and rig.trader.params_version == 2

    with rig.sessions() as s:
        versions = param_versions.versions(s)
        assert [(v.version, v.actor, v.note) for v in versions] == [
            (2, "bob", "double legs"),
            (1, "alice", "as shipped"),
        ]
        assert "-capital_per_position: 3000" in versions[0].diff
        assert "+capital_per_position: 6000" in versions[0].diff
        assert versions[1].yaml == SHIPPED_TEXT
    assert audited(rig) == [
        ("system", "engine_start", True),
        ("alice", "engine_reload", True),
        ("bob", "engine_reload", True),
        ("carol", "engine_reload", False),
        ("carol", "engine_reload", False),
    ]


def test_a_reload_reaches_the_paper_fills(rig):
    """paper.slippage_bps is a parameter too: after a reload the paper broker fills with it."""
    reloadable(rig)
    no_slippage = SHIPPED_TEXT.replace("slippage_bps: 5", "slippage_bps: 0")
    assert result(rig.command(CommandKind.RELOAD, "alice", params_text=no_slippage))[0]
    opened(rig)
    assert rig.rows("INFY")[0].entry_price == 1000.0  # not 1000.50


def test_without_a_loader_reload_is_refused_and_audited(rig):
    cmd = rig.command(CommandKind.RELOAD, "alice", params_text=BIGGER)
    assert result(cmd) == (False, "parameters cannot be reloaded here")
    with rig.sessions() as s:
        assert [(e.action, e.detail["ok"]) for e in audit.recent(s, 1)] == [
            ("engine_reload", False)
        ]


# --- 9. pause, resume, stop, start -------------------------------------------------------------


def test_pause_stops_new_legs_but_stops_trail_and_exits_happen_then_resume(tmp_path):
    rig = make_rig(tmp_path / "app.db", universe=("INFY", "TCS"), start=START)
    rig.start()
    opened(rig, "INFY")  # 10:00:01, GTT [975.45, 1050.55]
    opened(rig, "TCS")  # 10:00:02
    assert result(rig.command(CommandKind.RESUME, "bob")) == (
        False,
        "nothing to resume while running",
    )
    assert result(rig.command(CommandKind.PAUSE, "alice")) == (
        True,
        "entries paused; stops keep trailing",
    )
    rig.tick("INFY", 1006.0, seconds=59)  # 10:01:01: past P2's trigger, GTT due to trail
    assert buys(rig) == [("INFY", 3), ("TCS", 3)]
    assert rig.trader.signals["INFY"].reason == SkipReason.PAUSED
    assert [r.gtt.triggers for r in rig.sent(gw.ModifyGtt)] == [(980.85, 1050.55)]
    rig.tick("TCS", 975.46)  # TCS's engine stop (975.4875), above its GTT: sold while paused
    assert legs(rig, "TCS") == [(1, LegState.CLOSED, ExitReason.STOP_ENGINE)]
    assert rig.trader.build_view().entries_paused
    assert result(rig.command(CommandKind.RESUME, "alice")) == (True, "entries resumed")
    rig.tick("INFY", 1006.0)
    assert buys(rig) == [("INFY", 3), ("TCS", 3), ("INFY", 2)]
    assert audited(rig)[1:] == [
        ("bob", "engine_resume", False),
        ("alice", "engine_pause", True),
        ("alice", "engine_resume", True),
    ]


def test_pause_opens_no_new_ladder_until_resumed(tmp_path, market_store):
    uptrend(market_store, "INFY", 1000.0)
    rig = make_rig(tmp_path / "app.db", ohlcv=market_store, start=START)
    rig.start()
    rig.command(CommandKind.PAUSE, "alice")
    live(rig, {"INFY": 1020.0}, 120)  # two scan intervals of a qualifying signal
    assert buys(rig) == []
    rig.command(CommandKind.RESUME, "alice")
    live(rig, {"INFY": 1020.0}, 1)  # the scan was due: it runs on the next second
    assert buys(rig) == [("INFY", 2)]


def test_stop_sends_nothing_gtts_protect_and_start_reconciles_and_runs(tmp_path):
    rig = make_rig(tmp_path / "app.db", universe=("INFY", "TCS"), start=START)
    rig.start()
    opened(rig, "INFY")
    opened(rig, "TCS")
    gtt_ids = {s: rig.gtts(s)[0].broker_gtt_id for s in ("INFY", "TCS")}
    assert result(rig.command(CommandKind.STOP, "alice")) == (
        True,
        "stopped: no new orders; GTTs keep protecting open legs",
    )
    before = len(rig.gateway.sent)
    rig.tick("TCS", 975.46)  # under TCS's engine stop: stopped, the engine does not exit
    rig.tick("INFY", 1004.0)  # past P2's trigger: no buy
    rig.wait(61)  # no scan either
    assert calls_since(rig, before) == []
    assert rig.broker.get_gtt(gtt_ids["TCS"]).state is GttState.ACTIVE
    rig.tick("INFY", 975.0)  # through INFY's GTT: the broker still sells, at 974.50
    assert rig.broker.get_gtt(gtt_ids["INFY"]).state is GttState.TRIGGERED
    # The engine only records what the exchange did (step 1) and the broker's fill: no call.
    assert calls_since(rig, before) == []
    infy = rig.rows("INFY")[0]
    assert (infy.status, infy.exit_reason, infy.exit_price) == (
        LegState.CLOSED,
        ExitReason.STOP_GTT,
        974.50,
    )
    assert rig.trader.state is TradingState.STOPPED

    rig.start()
    assert audited(rig)[-2:] == [
        ("alice", "engine_stop", True),
        ("system", "engine_start", True),
    ]
    assert calls_since(rig, before) == [
        "ReconcileOrders",
        "ReconcileGtts",
        "ReconcilePositions",
        "ReconcileHoldings",
    ]
    assert rig.trader.state is TradingState.RUNNING
    assert rig.trader.detail == "reconciled with the broker: 1 ladders, 1 live legs"
    rig.tick("TCS", 975.46)  # running again: the engine's stop sells TCS
    assert legs(rig, "TCS") == [(1, LegState.CLOSED, ExitReason.STOP_ENGINE)]
    assert [r.order.order_type for r in sells(rig)] == [OrderType.LIMIT]


# --- 10. a buy the broker refuses --------------------------------------------------------------


def test_a_refused_buy_cancels_the_leg_shows_the_error_and_cools_down(tmp_path, market_store):
    db = tmp_path / "app.db"
    url = f"sqlite:///{db}"
    migrate.upgrade(url)
    # The paper account exists with ₹1,000: the rig's broker continues it (cash and all).
    PaperBroker(
        make_session_factory(make_engine(url)),
        rig_params(),
        clock=lambda: START,
        starting_cash=1_000,
    )
    uptrend(market_store, "INFY", 1000.0)
    rig = make_rig(db, ohlcv=market_store, start=START)
    rig.start()
    live(rig, {"INFY": 1020.0}, 1)  # the scan buys 2 @ 1020: ₹2,041 is more than the cash
    assert buys(rig) == [("INFY", 2)]
    (row,) = rig.rows("INFY")
    assert row.status == LegState.CANCELLED
    (order,) = rig.orders("INFY")
    assert (order.side, order.state, order.status_message) == (
        "BUY",
        "rejected",
        "insufficient funds: needs 2043.48, 1000.00 available",  # 2 x 1020.55 + charges
    )
    message = rig.trader.errors[0].message
    assert message.startswith("INFY P1 buy refused:") and "insufficient funds" in message
    assert not rig.trader.ladders and "INFY" in rig.trader.last_closed
    with rig.sessions() as s:
        (ladder,) = s.scalars(select(LadderRow))
        assert ladder.state == LadderState.CLOSED
    live(rig, {"INFY": 1020.0}, 60)  # the next scan: cooling down
    assert rig.trader.signals["INFY"].reason == SkipReason.COOLDOWN
    assert buys(rig) == [("INFY", 2)]
    assert rig.trader.state is TradingState.RUNNING
