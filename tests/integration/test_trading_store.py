"""The write-ahead trading store on a migrated app DB (SQLite, and PostgreSQL when present):
legs live their whole life through checked transitions, a refused call writes nothing,
and after a crash between an intent and its follow-up the rows say what is in flight."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from Webapp.states import (
    ExitReason,
    IllegalTransition,
    LadderState,
    LegState,
    OrderIntentState,
)
from Webapp.storage import legs, migrate
from Webapp.storage.db import make_engine, make_session_factory, transaction
from Webapp.storage.gtts import (
    gtt_deleted,
    gtt_intent,
    gtt_modified,
    gtt_modify_failed,
    gtt_modify_intent,
    gtt_place_failed,
    gtt_placed,
    gtt_triggered,
    gtts_in_flight,
)
from Webapp.storage.ladders import (
    abandon_ladder,
    last_closed_at,
    open_ladder,
    open_ladders,
    todays_realised_pnl,
    trades_between,
)
from Webapp.storage.legs import (
    add_leg_intent,
    cancel_entry,
    exit_intent,
    exit_undone,
    legs_without_active_gtt,
    raise_stop,
    raise_stops,
    sell_intent,
)
from Webapp.storage.orders import (
    exit_order_not_filled,
    mark_order_sent,
    orders_in_flight,
    record_order_modified,
)
from Webapp.storage.trading_models import Ladder, Trade, TradeGtt, TradeOrder
from Webapp.strategy.ladder import stop_below
from Webapp.strategy.pnl import sold_leg_pnl


def record_entry_fill(s, trade_id, price, qty, when, **kw):
    """The fill as the engine writes it: the stop and target the rules computed for it."""
    trade = s.get(Trade, trade_id)
    target = None if trade.target_pct is None else price * (1 + trade.target_pct / 100)
    stop = stop_below(price, trade.sl_pct)
    return legs.record_entry_fill(s, trade_id, price, qty, when, stop=stop, target=target, **kw)


def record_exit_fill(s, trade_id, price, qty, when, *, charges, **kw):
    """The sale as the engine writes it: the P&L the rules computed (strategy.pnl)."""
    pnl = sold_leg_pnl(s.get(Trade, trade_id).entry_price, price, qty, charges)
    return legs.record_exit_fill(
        s, trade_id, price, qty, when, pnl=pnl.gross, pnl_pct=pnl.pct, charges=pnl.charges,
        pnl_net=pnl.net, **kw,
    )  # fmt: skip


REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 09:30 IST
ACCOUNT = "paper"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass
class Db:
    url: str
    engines: list

    def sessions(self):
        """Sessions on a fresh engine, as a restarted process would open them."""
        engine = make_engine(self.url)
        self.engines.append(engine)
        return make_session_factory(engine)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    migrate.upgrade(url)
    handle = Db(url, [])
    yield handle
    for engine in handle.engines:
        engine.dispose()


@pytest.fixture
def sessions(db):
    return db.sessions()


# --- building legs in a given state --------------------------------------------------------


def new_ladder(sessions, symbol="INFY", account=ACCOUNT) -> int:
    with transaction(sessions) as s:
        return open_ladder(s, account, symbol, now=at(0)).id


def pending_leg(sessions, ladder_id, position=1, qty=3, tag=None) -> int:
    target = 5.0 if position == 1 else None
    with transaction(sessions) as s:
        trade, _ = add_leg_intent(
            s, ladder_id, position, qty, 2.5, target, tag or f"L{ladder_id}P{position}E", now=at(1)
        )
        return trade.trade_id


def bought_leg(sessions, ladder_id, position=1, price=1000.0, qty=3) -> int:
    trade_id = pending_leg(sessions, ladder_id, position, qty)
    with transaction(sessions) as s:
        mark_order_sent(s, f"L{ladder_id}P{position}E", f"OID{trade_id}", now=at(1))
    with transaction(sessions) as s:
        record_entry_fill(s, trade_id, price, qty, at(2))
    return trade_id


def protected_leg(sessions, ladder_id, position=1, price=1000.0, qty=3) -> tuple[int, int]:
    """A leg OPEN behind an ACTIVE GTT: (trade_id, gtt row id)."""
    trade_id = bought_leg(sessions, ladder_id, position, price, qty)
    with transaction(sessions) as s:
        gtt = gtt_intent(s, trade_id, "single", [975.0], [970.1], now=at(2))
        gtt_id = gtt.id
    with transaction(sessions) as s:
        gtt_placed(s, gtt_id, 500 + trade_id, now=at(2))
    return trade_id, gtt_id


def leg(sessions, trade_id) -> Trade:
    with transaction(sessions) as s:
        return s.get(Trade, trade_id)


def snapshot(sessions) -> dict:
    """Every row of the trading tables, to show that a refused call changed nothing."""
    with transaction(sessions) as s:
        return {
            model.__tablename__: sorted(
                tuple(row) for row in s.execute(select(*model.__table__.columns)).all()
            )
            for model in (Ladder, Trade, TradeOrder, TradeGtt)
        }


# --- schema --------------------------------------------------------------------------------


def test_the_trades_table_has_exactly_the_contract_indexes(db):
    engine = make_engine(db.url)
    db.engines.append(engine)
    indexes = inspect(engine).get_indexes("trades")
    assert {tuple(ix["column_names"]) for ix in indexes} == {
        ("symbol", "status"),
        ("entry_time",),
        ("pnl",),
    }


def test_the_database_refuses_a_second_order_with_the_same_tag(sessions):
    first, second = new_ladder(sessions, "INFY"), new_ladder(sessions, "TCS")
    pending_leg(sessions, first, tag="SAMETAG1")
    with pytest.raises(IntegrityError), transaction(sessions) as s:
        add_leg_intent(s, second, 1, 2, 2.5, 5.0, "SAMETAG1", now=at(3))
    with transaction(sessions) as s:
        assert s.get(Ladder, second).legs == []


def test_migration_0004_goes_down_and_up_again(db):
    from alembic import command

    trading = {"ladders", "trades", "orders", "gtts", "param_versions"}
    command.downgrade(migrate.alembic_config(db.url), "0003")
    engine = make_engine(db.url)
    db.engines.append(engine)
    assert not trading & set(inspect(engine).get_table_names())
    migrate.upgrade(db.url)
    assert trading <= set(inspect(engine).get_table_names())


# --- a leg's whole life ----------------------------------------------------------------------


def test_a_leg_goes_from_pending_entry_to_closed_with_gross_pct_and_net_pnl(sessions):
    ladder_id = new_ladder(sessions)
    trade_id = pending_leg(sessions, ladder_id)
    assert leg(sessions, trade_id).status == LegState.PENDING_ENTRY

    with transaction(sessions) as s:
        mark_order_sent(s, f"L{ladder_id}P1E", "OID1", now=at(1))
        record_entry_fill(s, trade_id, 1000.0, 3, at(2))
    bought = leg(sessions, trade_id)
    assert (bought.status, bought.entry_price, bought.entry_time) == ("protecting", 1000.0, at(2))
    assert (bought.stop_loss, bought.target, bought.high) == (975.0, 1050.0, 1000.0)

    with transaction(sessions) as s:
        gtt_row = gtt_intent(s, trade_id, "two-leg", [975.0, 1050.0], [970.1, 1044.75], now=at(2))
    with transaction(sessions) as s:
        gtt_placed(s, gtt_row.id, 777, now=at(2))
    assert (leg(sessions, trade_id).status, leg(sessions, trade_id).gtt_id) == ("open", 777)

    with transaction(sessions) as s:
        exit_intent(s, trade_id, ExitReason.MANUAL, now=at(10))
    with transaction(sessions) as s:
        gtt_deleted(s, gtt_row.id, now=at(10))
        sell_intent(s, trade_id, "L1P1X1", now=at(10))
    assert leg(sessions, trade_id).status == LegState.PENDING_EXIT
    with transaction(sessions) as s:
        record_exit_fill(s, trade_id, 1030.0, 3, at(11), charges=4.56, tag="L1P1X1")

    closed = leg(sessions, trade_id)
    assert closed.status == LegState.CLOSED
    assert (closed.exit_price, closed.exit_time, closed.exit_reason) == (1030.0, at(11), "manual")
    assert (closed.pnl, closed.pnl_pct, closed.charges, closed.pnl_net) == (90.0, 3.0, 4.56, 85.44)
    assert closed.exit_tag == "L1P1X1" and closed.entry_tag == f"L{ladder_id}P1E"
    with transaction(sessions) as s:
        ladder = s.get(Ladder, ladder_id)
        assert (ladder.state, ladder.closed_at, ladder.stopped_out) == ("closed", at(11), False)
        assert [o.state for o in ladder.legs[0].orders] == ["filled", "filled"]
        assert last_closed_at(s, ACCOUNT, "INFY") == at(11)
        assert last_closed_at(s, "live", "INFY") is None
        assert todays_realised_pnl(s, ACCOUNT, at(0)).net == 85.44
        assert todays_realised_pnl(s, ACCOUNT, at(12)).legs == 0
        assert [t.trade_id for t in trades_between(s, ACCOUNT, at(0), at(60))] == [trade_id]
        assert open_ladders(s, ACCOUNT) == []


def test_a_losing_leg_has_negative_pnl_and_net_below_gross(sessions):
    trade_id, gtt_id = protected_leg(sessions, new_ladder(sessions), price=200.0, qty=10)
    with transaction(sessions) as s:
        gtt_triggered(s, gtt_id, 0, now=at(5))
        record_exit_fill(s, trade_id, 195.0, 10, at(5), charges=3.0)
    closed = leg(sessions, trade_id)
    assert (closed.pnl, closed.pnl_pct, closed.pnl_net, closed.exit_reason) == (
        -50.0,
        -2.5,
        -53.0,
        "stop_gtt",
    )


def test_a_target_hit_by_the_gtt_closes_the_leg_without_a_sell_of_ours(sessions):
    ladder_id = new_ladder(sessions)
    trade_id = bought_leg(sessions, ladder_id)
    with transaction(sessions) as s:
        gtt_id = gtt_intent(s, trade_id, "two-leg", [975.0, 1050.0], [970.1, 1044.75], now=at(2)).id
    with transaction(sessions) as s:
        gtt_placed(s, gtt_id, 9, now=at(2))
    with transaction(sessions) as s:
        gtt_triggered(s, gtt_id, 1, now=at(30))
    assert (leg(sessions, trade_id).status, leg(sessions, trade_id).exit_reason) == (
        "pending_exit",
        "target",
    )
    with transaction(sessions) as s, pytest.raises(IllegalTransition, match="triggered"):
        sell_intent(s, trade_id, "NEVERTWICE", now=at(30))  # the GTT's order sells it
    with transaction(sessions) as s:
        record_exit_fill(s, trade_id, 1050.0, 3, at(31), charges=4.0)
    with transaction(sessions) as s:
        ladder = s.get(Ladder, ladder_id)
        assert (ladder.state, ladder.stopped_out) == ("closed", False)


def test_a_stop_marks_the_ladder_stopped_out_and_it_closes_with_its_last_leg(sessions):
    ladder_id = new_ladder(sessions)
    p1, _ = protected_leg(sessions, ladder_id, 1)
    p2, p2_gtt = protected_leg(sessions, ladder_id, 2, price=1003.0)
    with transaction(sessions) as s:
        exit_intent(s, p2, ExitReason.STOP_ENGINE, now=at(20))
    with transaction(sessions) as s, pytest.raises(IllegalTransition, match="stop in flight"):
        add_leg_intent(s, ladder_id, 3, 2, 5.0, None, "P3TOOSOON", now=at(20))
    with transaction(sessions) as s:
        gtt_deleted(s, p2_gtt, now=at(20))
        sell_intent(s, p2, "P2STOP", now=at(20))
        record_exit_fill(s, p2, 977.0, 3, at(21), charges=3.5, tag="P2STOP")
    with transaction(sessions) as s:
        ladder = s.get(Ladder, ladder_id)
        assert (ladder.state, ladder.stopped_out, ladder.closed_at) == ("stopped_out", True, None)
    with transaction(sessions) as s, pytest.raises(IllegalTransition, match="needs open"):
        add_leg_intent(s, ladder_id, 3, 2, 5.0, None, "P3NEVER", now=at(22))
    with transaction(sessions) as s:
        exit_intent(s, p1, ExitReason.EMERGENCY, now=at(40))
        gtt_deleted(s, leg(sessions, p1).gtts[0].id, now=at(40))
        sell_intent(s, p1, "P1EMERG", purpose="emergency", now=at(40))
        record_exit_fill(s, p1, 990.0, 3, at(41), charges=3.5, tag="P1EMERG")
    with transaction(sessions) as s:
        ladder = s.get(Ladder, ladder_id)
        assert (ladder.state, ladder.stopped_out, ladder.closed_at) == ("closed", True, at(41))
        assert todays_realised_pnl(s, ACCOUNT, at(0)).gross == round((977 - 1003) * 3 - 30, 2)


def test_the_stop_never_moves_down(sessions):
    trade_id, _ = protected_leg(sessions, new_ladder(sessions))
    with transaction(sessions) as s:
        raise_stop(s, trade_id, 984.75, 1010.0, now=at(5))
    with transaction(sessions) as s, pytest.raises(IllegalTransition, match="never moves down"):
        raise_stop(s, trade_id, 980.0, 1005.0, now=at(6))
    with transaction(sessions) as s:
        raise_stop(s, trade_id, 984.75, 1008.0, now=at(7))  # same stop, a lower high: kept
    after = leg(sessions, trade_id)
    assert (after.stop_loss, after.high) == (984.75, 1010.0)


def test_many_stops_are_raised_at_once_and_none_moves_down(sessions):
    """The engine's once-a-second flush: one statement, the same rule as raise_stop."""
    p1, _ = protected_leg(sessions, new_ladder(sessions, "INFY"))
    p2, _ = protected_leg(sessions, new_ladder(sessions, "TCS"))
    p3, _ = protected_leg(sessions, new_ladder(sessions, "ITC"))
    with transaction(sessions) as s:
        raise_stop(s, p3, 990.0, 1015.0, now=at(4))
    with transaction(sessions) as s:
        raise_stops(
            s,
            [(p1, 984.75, 1010.0), (p2, 980.0, 1005.0), (p3, 985.0, 1012.0)],  # p3: lower
            now=at(5),
        )
    assert [(leg(sessions, t).stop_loss, leg(sessions, t).high) for t in (p1, p2, p3)] == [
        (984.75, 1010.0),
        (980.0, 1005.0),
        (990.0, 1015.0),  # never down, and its high kept
    ]


def test_a_partial_entry_fill_holds_what_was_bought(sessions):
    trade_id = pending_leg(sessions, new_ladder(sessions), qty=5)
    with transaction(sessions) as s:
        record_entry_fill(s, trade_id, 500.0, 2, at(2), broker_order_id="OID9")
    bought = leg(sessions, trade_id)
    assert (bought.qty, bought.orders[0].state, bought.orders[0].filled_qty) == (2, "cancelled", 2)
    assert bought.orders[0].broker_order_id == "OID9"


def test_a_rejected_first_entry_closes_the_ladder_so_the_symbol_cools_down(sessions):
    ladder_id = new_ladder(sessions)
    trade_id = pending_leg(sessions, ladder_id)
    with transaction(sessions) as s:
        cancel_entry(s, trade_id, order_state=OrderIntentState.REJECTED, message="RMS", now=at(3))
    with transaction(sessions) as s:
        trade = s.get(Trade, trade_id)
        assert (trade.status, trade.orders[0].state) == ("cancelled", "rejected")
        assert trade.orders[0].status_message == "RMS"
        assert last_closed_at(s, ACCOUNT, "INFY") == at(3)


def test_a_cancelled_second_entry_may_be_tried_again(sessions):
    ladder_id = new_ladder(sessions)
    protected_leg(sessions, ladder_id, 1)
    first_try = pending_leg(sessions, ladder_id, 2, tag="P2TRY1")
    with transaction(sessions) as s:
        cancel_entry(s, first_try, now=at(3))
    second_try = pending_leg(sessions, ladder_id, 2, tag="P2TRY2")
    assert leg(sessions, second_try).status == LegState.PENDING_ENTRY
    with transaction(sessions) as s:
        assert s.get(Ladder, ladder_id).state == LadderState.OPEN


def test_a_gtt_modify_keeps_the_old_triggers_until_the_broker_confirms(sessions):
    trade_id, gtt_id = protected_leg(sessions, new_ladder(sessions))
    with transaction(sessions) as s:
        gtt_modify_intent(s, gtt_id, [985.0], [980.05], now=at(5))
    with transaction(sessions) as s:
        gtt = s.get(TradeGtt, gtt_id)
        assert (gtt.state, gtt.triggers, gtt.pending_triggers) == ("modifying", [975.0], [985.0])
        assert gtt.last_change_at == at(2)
        gtt_modified(s, gtt_id, now=at(6))
    with transaction(sessions) as s:
        gtt = s.get(TradeGtt, gtt_id)
        assert (gtt.state, gtt.triggers, gtt.limit_prices) == ("active", [985.0], [980.05])
        assert (gtt.pending_triggers, gtt.last_change_at) == (None, at(6))
        gtt_modify_intent(s, gtt_id, [990.0], [985.0], now=at(8))
        gtt_modify_failed(s, gtt_id, message="too close to LTP", now=at(8))
    with transaction(sessions) as s:
        gtt = s.get(TradeGtt, gtt_id)
        assert (gtt.state, gtt.triggers, gtt.last_change_at) == ("active", [985.0], at(6))


def test_a_failed_gtt_delete_puts_the_leg_back_to_open(sessions):
    trade_id, gtt_id = protected_leg(sessions, new_ladder(sessions))
    with transaction(sessions) as s:
        exit_intent(s, trade_id, ExitReason.STOP_ENGINE, now=at(5))
    with transaction(sessions) as s:
        exit_undone(s, trade_id, now=at(5))
    trade = leg(sessions, trade_id)
    assert (trade.status, trade.exit_reason, trade.gtts[0].state) == ("open", None, "active")


def test_a_rejected_sell_leaves_the_leg_pending_exit_for_a_new_sell(sessions):
    trade_id, gtt_id = protected_leg(sessions, new_ladder(sessions))
    with transaction(sessions) as s:
        exit_intent(s, trade_id, ExitReason.STOP_ENGINE, now=at(5))
        gtt_deleted(s, gtt_id, now=at(5))
        sell_intent(s, trade_id, "SELL1", order_type="LIMIT", price=970.0, now=at(5))
    with transaction(sessions) as s:
        mark_order_sent(s, "SELL1", "OIDS1", now=at(5))
        record_order_modified(s, "SELL1", "MARKET", None, now=at(6))
        assert s.get(TradeOrder, leg(sessions, trade_id).orders[1].id).order_type == "MARKET"
        exit_order_not_filled(s, "SELL1", message="circuit", now=at(6))
    with transaction(sessions) as s:
        sell_intent(s, trade_id, "SELL2", now=at(7))
    assert leg(sessions, trade_id).exit_tag == "SELL2"


def test_reads_keep_paper_and_live_apart(sessions):
    paper_leg = pending_leg(sessions, new_ladder(sessions, "INFY", "paper"), tag="PAPER1")
    live_leg = pending_leg(sessions, new_ladder(sessions, "INFY", "live"), tag="LIVE1")
    with transaction(sessions) as s:
        assert [o.trade_id for o in orders_in_flight(s, "paper")] == [paper_leg]
        assert [o.trade_id for o in orders_in_flight(s, "live")] == [live_leg]
        assert [ladder.account for ladder in open_ladders(s, "live")] == ["live"]


def test_legs_without_an_active_gtt_are_the_bought_unprotected_ones(sessions):
    ladder_id = new_ladder(sessions)
    trade_id = bought_leg(sessions, ladder_id)
    pending_leg(sessions, new_ladder(sessions, "TCS"))  # not bought: nothing to protect
    with transaction(sessions) as s:
        assert [t.trade_id for t in legs_without_active_gtt(s, ACCOUNT)] == [trade_id]
        gtt_id = gtt_intent(s, trade_id, "single", [975.0], [970.1], now=at(2)).id
    with transaction(sessions) as s:
        assert legs_without_active_gtt(s, ACCOUNT) == []  # its placement is in flight
        assert [g.id for g in gtts_in_flight(s, ACCOUNT)] == [gtt_id]
        gtt_place_failed(s, gtt_id, message="trigger too close", now=at(2))
    with transaction(sessions) as s:
        assert [t.trade_id for t in legs_without_active_gtt(s, ACCOUNT)] == [trade_id]
        assert gtts_in_flight(s, ACCOUNT) == []


def test_an_empty_ladder_left_by_a_crash_can_be_abandoned(sessions):
    ladder_id = new_ladder(sessions)
    with transaction(sessions) as s:
        assert [(lad.id, lad.legs) for lad in open_ladders(s, ACCOUNT)] == [(ladder_id, [])]
        abandon_ladder(s, ladder_id, now=at(1))
    with transaction(sessions) as s:
        assert open_ladders(s, ACCOUNT) == []


# --- refused transitions write nothing ------------------------------------------------------


def _ladder_with(sessions, build: Callable) -> dict:
    ladder_id = new_ladder(sessions)
    return {"ladder": ladder_id, **build(sessions, ladder_id)}


def _pending(sessions, ladder_id):
    return {"trade": pending_leg(sessions, ladder_id)}


def _protecting(sessions, ladder_id):
    return {"trade": bought_leg(sessions, ladder_id)}


def _open(sessions, ladder_id):
    trade_id, gtt_id = protected_leg(sessions, ladder_id)
    return {"trade": trade_id, "gtt": gtt_id}


def _deleting(sessions, ladder_id):
    ids = _open(sessions, ladder_id)
    with transaction(sessions) as s:
        exit_intent(s, ids["trade"], ExitReason.STOP_ENGINE, now=at(5))
    return ids


def _triggered(sessions, ladder_id):
    ids = _open(sessions, ladder_id)
    with transaction(sessions) as s:
        gtt_triggered(s, ids["gtt"], 0, now=at(5))
    return ids


def _closed(sessions, ladder_id):
    ids = _triggered(sessions, ladder_id)
    with transaction(sessions) as s:
        record_exit_fill(s, ids["trade"], 975.0, 3, at(6), charges=3.0)
    return ids


REFUSED = {
    "order acknowledged twice": (
        _protecting,
        lambda s, ids: mark_order_sent(s, f"L{ids['ladder']}P1E", "X", now=at(9)),
    ),
    "entry fill on an open leg": (
        _open,
        lambda s, ids: record_entry_fill(s, ids["trade"], 1.0, 1, at(9)),
    ),
    "cancel the entry of a bought leg": (
        _protecting,
        lambda s, ids: cancel_entry(s, ids["trade"], now=at(9)),
    ),
    "GTT for a leg not bought": (
        _pending,
        lambda s, ids: gtt_intent(s, ids["trade"], "single", [1.0], [1.0], now=at(9)),
    ),
    "second GTT for a protected leg": (
        _open,
        lambda s, ids: gtt_intent(s, ids["trade"], "single", [1.0], [1.0], now=at(9)),
    ),
    "GTT placed twice": (_open, lambda s, ids: gtt_placed(s, ids["gtt"], 1, now=at(9))),
    "modified without a modify": (_open, lambda s, ids: gtt_modified(s, ids["gtt"], now=at(9))),
    "modify a GTT being deleted": (
        _deleting,
        lambda s, ids: gtt_modify_intent(s, ids["gtt"], [1.0], [1.0], now=at(9)),
    ),
    "delete confirmed without a delete": (
        _open,
        lambda s, ids: gtt_deleted(s, ids["gtt"], now=at(9)),
    ),
    "raise the stop of a closed leg": (
        _closed,
        lambda s, ids: raise_stop(s, ids["trade"], 2000.0, 2000.0, now=at(9)),
    ),
    "exit a leg not bought": (
        _pending,
        lambda s, ids: exit_intent(s, ids["trade"], ExitReason.MANUAL, now=at(9)),
    ),
    "exit a closed leg": (
        _closed,
        lambda s, ids: exit_intent(s, ids["trade"], ExitReason.MANUAL, now=at(9)),
    ),
    "sell before the GTT delete is confirmed": (
        _deleting,
        lambda s, ids: sell_intent(s, ids["trade"], "SELLX", now=at(9)),
    ),
    "sell after the GTT fired": (
        _triggered,
        lambda s, ids: sell_intent(s, ids["trade"], "SELLX", now=at(9)),
    ),
    "exit fill of an open leg": (
        _open,
        lambda s, ids: record_exit_fill(s, ids["trade"], 1.0, 3, at(9), charges=0.0),
    ),
    "exit fill recorded twice": (
        _closed,
        lambda s, ids: record_exit_fill(s, ids["trade"], 1.0, 3, at(9), charges=0.0),
    ),
    "exit undone on an open leg": (_open, lambda s, ids: exit_undone(s, ids["trade"], now=at(9))),
    "P3 before P2": (
        _open,
        lambda s, ids: add_leg_intent(s, ids["ladder"], 3, 1, 5.0, None, "P3X", now=at(9)),
    ),
    "P1 twice": (
        _open,
        lambda s, ids: add_leg_intent(s, ids["ladder"], 1, 1, 2.5, 5.0, "P1X", now=at(9)),
    ),
    "P2 while P1's entry is in flight": (
        _pending,
        lambda s, ids: add_leg_intent(s, ids["ladder"], 2, 1, 2.5, None, "P2X", now=at(9)),
    ),
    "a leg on a closed ladder": (
        _closed,
        lambda s, ids: add_leg_intent(s, ids["ladder"], 2, 1, 2.5, None, "P2X", now=at(9)),
    ),
    "a second ladder on the same symbol": (
        _open,
        lambda s, ids: open_ladder(s, ACCOUNT, "INFY", now=at(9)),
    ),
    "abandon a ladder with a live leg": (
        _open,
        lambda s, ids: abandon_ladder(s, ids["ladder"], now=at(9)),
    ),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_an_illegal_transition_is_refused_and_writes_nothing(sessions, case):
    build, call = REFUSED[case]
    ids = _ladder_with(sessions, build)
    before = snapshot(sessions)
    with pytest.raises(IllegalTransition), transaction(sessions) as s:
        call(s, ids)
    assert snapshot(sessions) == before


# --- crashes between an intent and its follow-up --------------------------------------------

CRASH_AFTER_INTENT = """
import os, sys
from datetime import UTC, datetime
from Webapp.storage.db import make_engine, make_session_factory, transaction
from Webapp.storage.legs import add_leg_intent
from Webapp.storage.ladders import open_ladder

now = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
sessions = make_session_factory(make_engine(sys.argv[1]))
with transaction(sessions) as s:
    ladder = open_ladder(s, "paper", "INFY", now=now)
    add_leg_intent(s, ladder.id, 1, 3, 2.5, 5.0, "CRASHTAG1", now=now)
os._exit(0)  # the process dies where place_order would have been called: no cleanup at all
"""


def test_a_crash_after_the_intent_leaves_a_pending_order_found_by_its_tag(db):
    subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_INTENT, db.url], check=True, timeout=60, cwd=REPO_ROOT
    )
    with transaction(db.sessions()) as s:
        (order,) = orders_in_flight(s, ACCOUNT)
        assert (order.tag, order.state, order.side, order.qty) == ("CRASHTAG1", "pending", "BUY", 3)
        assert order.broker_order_id is None
        assert order.trade.status == LegState.PENDING_ENTRY
        (ladder,) = open_ladders(s, ACCOUNT)
        assert [leg.entry_tag for leg in ladder.legs] == ["CRASHTAG1"]


def test_a_crash_before_commit_leaves_nothing_half_written(db):
    sessions = db.sessions()
    ladder_id = new_ladder(sessions)
    session = sessions()
    add_leg_intent(session, ladder_id, 1, 3, 2.5, 5.0, "NEVERSAVED", now=at(1))
    session.flush()  # written to the DB's transaction, never committed
    db.engines[-1].dispose()  # the connection goes away as a dying process's would
    with transaction(db.sessions()) as s:
        assert orders_in_flight(s, ACCOUNT) == []
        assert [lad.legs for lad in open_ladders(s, ACCOUNT)] == [[]]


def test_a_crash_during_each_broker_call_is_visible_after_a_restart(db):
    sessions = db.sessions()
    ladder_id = new_ladder(sessions)
    trade_id = bought_leg(sessions, ladder_id)
    with transaction(sessions) as s:
        gtt_id = gtt_intent(s, trade_id, "single", [975.0], [970.1], now=at(2)).id
    db.engines[-1].dispose()  # crash: place_gtt's reply never recorded
    restarted = db.sessions()
    with transaction(restarted) as s:
        (gtt,) = gtts_in_flight(s, ACCOUNT)
        assert (gtt.id, gtt.state, gtt.trade.status) == (gtt_id, "pending", "protecting")
        gtt_placed(s, gtt_id, 42, now=at(3))  # reconciliation found it at the broker
    with transaction(restarted) as s:
        exit_intent(s, trade_id, ExitReason.STOP_ENGINE, now=at(4))
    db.engines[-1].dispose()  # crash: the delete's outcome unknown
    with transaction(db.sessions()) as s:
        (gtt,) = gtts_in_flight(s, ACCOUNT)
        assert (gtt.broker_gtt_id, gtt.state, gtt.trade.status) == (42, "deleting", "pending_exit")
        assert gtt.trade.exit_reason == "stop_engine"
