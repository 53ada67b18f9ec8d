"""The leg lifecycle as a table, cell by cell: every stage × event handled, ignored or refused.

HANDLED lists each cell that moves a leg or asks for something: the stage it goes to and
the intents, in order. REFUSED lists the cells that fail the engine closed. Every other
cell must be ignored on purpose: nothing changes and nothing is asked (a late or
duplicate answer about something already settled). A new stage or event therefore fails
this test until someone decides each of its cells.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from Webapp.broker.base import (
    Gtt,
    GttOrderResult,
    GttState,
    GttType,
    Order,
    OrderState,
    OrderType,
    Side,
)
from Webapp.execution import leg_events as ev
from Webapp.execution.leg_lifecycle import TIMED, LegWork, Stage, transition
from Webapp.states import ExitReason, OrderIntentState
from Webapp.strategy.actions import ModifyGtt, PlaceGtt

S = Stage
T0 = datetime(2026, 11, 25, 4, 30, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)
ENTRY, EXIT = "E0123456789abcdef", "X0123456789abcdef"
PLACE = PlaceGtt("INFY", 1, 3, 975.45, 1050.55, (970.55, 1045.25), 1000.5)
MODIFY = ModifyGtt("INFY", 1, 3, 985.0, 1050.55, (980.05, 1045.25), 1010.0)


def gtt(state: GttState, triggers=(975.45, 1050.55), results=()) -> Gtt:
    return Gtt(101, "INFY", GttType.TWO_LEG, state, triggers, (970.55, 1045.25), 1000.5, 3,
               results=results)  # fmt: skip


def order(order_id: str, tag: str | None, state: OrderState, filled: int = 0) -> Order:
    return Order(order_id, tag, "INFY", Side.SELL, OrderType.LIMIT, 3, state, filled,
                 970.55 if filled else 0.0, status_message="exchange said no")  # fmt: skip


# One leg in each stage, carrying what that stage refers to.
BASE = LegWork("INFY", 1, 7, S.ENTERING, entry_tag=ENTRY, entry_order_id="B1")
HELD = replace(BASE, gtt_row_id=11, gtt_id=101)
EXITING = replace(HELD, exit_reason=ExitReason.STOP_ENGINE)
SOLD = replace(EXITING, gtt_row_id=None, gtt_id=None, exit_tag=EXIT, exit_order_id="S1",
               exit_since=T0)  # fmt: skip
WORK = {
    S.ENTERING: replace(BASE, entry_order_id=None),
    S.UNPROTECTED: replace(BASE, stage=S.UNPROTECTED),
    S.PLACING: replace(BASE, stage=S.PLACING, gtt_row_id=11, terms=PLACE),
    S.PLACING_EXIT: replace(
        BASE, stage=S.PLACING_EXIT, gtt_row_id=11, terms=PLACE, exit_reason=ExitReason.STOP_ENGINE
    ),  # fmt: skip
    S.PLACE_CHECK: replace(BASE, stage=S.PLACE_CHECK, gtt_row_id=11, terms=PLACE),
    S.PLACE_CHECK_EXIT: replace(
        BASE,
        stage=S.PLACE_CHECK_EXIT,
        gtt_row_id=11,
        terms=PLACE,
        exit_reason=ExitReason.STOP_ENGINE,
    ),  # fmt: skip
    S.PROTECTED: replace(HELD, stage=S.PROTECTED),
    S.MODIFYING: replace(HELD, stage=S.MODIFYING, terms=MODIFY),
    S.MODIFY_CHECK: replace(HELD, stage=S.MODIFY_CHECK, terms=MODIFY),
    S.DELETING: replace(EXITING, stage=S.DELETING),
    S.DELETE_CHECK: replace(EXITING, stage=S.DELETE_CHECK),
    S.SELLING: replace(SOLD, stage=S.SELLING),
    S.SELLING_MARKET: replace(SOLD, stage=S.SELLING_MARKET),
    S.SELL_RETRY: replace(
        SOLD,
        stage=S.SELL_RETRY,
        exit_tag=None,
        exit_order_id=None,
        retry_at=T0 + timedelta(seconds=5),
    ),  # fmt: skip
    S.GTT_SELLING: replace(
        HELD,
        stage=S.GTT_SELLING,
        exit_reason=ExitReason.STOP_GTT,
        exit_order_id="G1",
        exit_since=T0,
    ),  # fmt: skip
    S.GTT_SELLING_MARKET: replace(
        HELD,
        stage=S.GTT_SELLING_MARKET,
        exit_reason=ExitReason.STOP_GTT,
        exit_order_id="G1",
        exit_since=T0,
    ),  # fmt: skip
    S.CLOSED: replace(SOLD, stage=S.CLOSED),
    S.CANCELLED: replace(BASE, stage=S.CANCELLED),
}

FIRED = GttOrderResult(0, "G1", "success")
REFUSED_AT_EXCHANGE = GttOrderResult(0, None, "failed", "price under the lower circuit limit")
EVENTS = {
    "BuyAcked": ev.BuyAcked("B1", T1),
    "BuyFilled": ev.BuyFilled(3, 1000.5, T1, "B1", PLACE),
    "BuyFilled unplaceable": ev.BuyFilled(3, 1000.5, T1, "B1", None),
    "BuyEnded": ev.BuyEnded(OrderIntentState.REJECTED, "insufficient funds"),
    "BuyReplyLost": ev.BuyReplyLost("read timed out"),
    "Protect": ev.Protect(PLACE),
    "GttPlaced": ev.GttPlaced(101, T1),
    "GttRefused": ev.GttRefused("Trigger price too close to the last price", T1),
    "GttReplyLost": ev.GttReplyLost("connection reset"),
    "TrailDue": ev.TrailDue(MODIFY),
    "GttModified": ev.GttModified(T1),
    "GttCallFailed": ev.GttCallFailed("Trigger price too close to the last price"),
    "GttDeleteAnswered active": ev.GttDeleteAnswered(GttState.ACTIVE, T1),
    "GttDeleteAnswered triggered": ev.GttDeleteAnswered(GttState.TRIGGERED, T1),
    "GttSeen active": ev.GttSeen(gtt(GttState.ACTIVE), T1),
    "GttSeen modified": ev.GttSeen(gtt(GttState.ACTIVE, (985.0, 1050.55)), T1),
    "GttSeen gone": ev.GttSeen(None, T1),
    "GttSeen deleted by hand": ev.GttSeen(gtt(GttState.DELETED), T1),
    "GttSeen fired": ev.GttSeen(gtt(GttState.TRIGGERED, results=(FIRED,)), T1),
    "GttSeen fired, order refused": ev.GttSeen(
        gtt(GttState.TRIGGERED, results=(REFUSED_AT_EXCHANGE,)), T1
    ),
    "GttLookupFailed": ev.GttLookupFailed("gateway timeout"),
    "ExitDecided": ev.ExitDecided(ExitReason.STOP_ENGINE),
    "ExitDecided emergency": ev.ExitDecided(ExitReason.EMERGENCY),
    "SellSent": ev.SellSent("X1111111111111111", False, T1),
    "SellNotSent": ev.SellNotSent("trading is stopped", T1),
    "SellRefused": ev.SellRefused("price outside the circuit band", T1),
    "SellOrderSeen open": ev.SellOrderSeen(order("S1", EXIT, OrderState.OPEN), T1),
    "SellOrderSeen filled": ev.SellOrderSeen(order("S1", EXIT, OrderState.FILLED, 3), T1),
    "SellOrderSeen cancelled": ev.SellOrderSeen(order("S1", EXIT, OrderState.CANCELLED), T1),
    "SellOrderSeen partly filled": ev.SellOrderSeen(order("S1", EXIT, OrderState.CANCELLED, 1), T1),
    "SellReplyLost": ev.SellReplyLost("connection reset"),
    "SellNotFound": ev.SellNotFound(T1),
    "GttOrderSeen open": ev.GttOrderSeen(order("G1", None, OrderState.OPEN), T1),
    "GttOrderSeen filled": ev.GttOrderSeen(order("G1", None, OrderState.FILLED, 3), T1),
    "GttOrderSeen rejected": ev.GttOrderSeen(order("G1", None, OrderState.REJECTED), T1),
    "GttOrderSeen partly filled": ev.GttOrderSeen(order("G1", None, OrderState.CANCELLED, 1), T1),
    "ToMarketAnswered ok": ev.ToMarketAnswered(True),
    "ToMarketAnswered failed": ev.ToMarketAnswered(False, "order already complete"),
    "Tick": ev.Tick(T0 + timedelta(seconds=30), timedelta(seconds=30)),
}

# (stage, event) -> (stage after, intents in order)
HANDLED = {
    # --- the buy ---
    (S.ENTERING, "BuyAcked"): (S.ENTERING, ["RecordOrderSent"]),
    (S.ENTERING, "BuyFilled"): (S.PLACING, ["RecordEntryFill", "PlaceGttCall"]),
    (S.ENTERING, "BuyFilled unplaceable"): (S.UNPROTECTED, ["RecordEntryFill"]),
    (S.ENTERING, "BuyEnded"): (S.CANCELLED, ["RecordEntryCancelled"]),
    (S.ENTERING, "BuyReplyLost"): (S.ENTERING, ["ShowError", "FindOrderCall"]),
    # --- protection: place, lost reply, refused ---
    (S.UNPROTECTED, "Protect"): (S.PLACING, ["PlaceGttCall"]),
    (S.UNPROTECTED, "ExitDecided"): (S.SELLING, ["RecordExitIntent", "SellCall"]),
    (S.UNPROTECTED, "ExitDecided emergency"): (S.SELLING, ["RecordExitIntent", "SellCall"]),
    (S.PLACING, "GttPlaced"): (S.PROTECTED, ["RecordGttPlaced"]),
    (S.PLACING, "GttRefused"): (S.UNPROTECTED, ["RecordGttPlaceFailed", "ShowError"]),
    (S.PLACING, "GttReplyLost"): (S.PLACE_CHECK, ["ShowError", "ListGttsCall"]),
    (S.PLACING, "ExitDecided"): (S.PLACING_EXIT, []),
    (S.PLACING, "ExitDecided emergency"): (S.PLACING_EXIT, []),
    (S.PLACING_EXIT, "GttPlaced"): (
        S.DELETING,
        ["RecordGttPlaced", "RecordExitIntent", "DeleteGttCall"],
    ),
    (S.PLACING_EXIT, "GttRefused"): (
        S.SELLING,
        ["RecordGttPlaceFailed", "RecordExitIntent", "SellCall"],
    ),
    (S.PLACING_EXIT, "GttReplyLost"): (S.PLACE_CHECK_EXIT, ["ShowError", "ListGttsCall"]),
    (S.PLACING_EXIT, "ExitDecided emergency"): (S.PLACING_EXIT, []),
    **{
        (stage, seen): (S.PROTECTED, ["RecordGttPlaced"])
        for stage in (S.PLACE_CHECK,)
        for seen in ("GttSeen active", "GttSeen modified")
    },
    **{
        (S.PLACE_CHECK_EXIT, seen): (
            S.DELETING,
            ["RecordGttPlaced", "RecordExitIntent", "DeleteGttCall"],
        )
        for seen in ("GttSeen active", "GttSeen modified")
    },
    **{
        (S.PLACE_CHECK, seen): (S.UNPROTECTED, ["RecordGttPlaceFailed", "ShowError"])
        for seen in ("GttSeen gone", "GttSeen deleted by hand")
    },
    **{
        (S.PLACE_CHECK_EXIT, seen): (
            S.SELLING,
            ["RecordGttPlaceFailed", "RecordExitIntent", "SellCall"],
        )
        for seen in ("GttSeen gone", "GttSeen deleted by hand")
    },
    **{
        (stage, "GttSeen fired"): (S.GTT_SELLING, ["RecordGttPlaced", "RecordGttTriggered"])
        for stage in (S.PLACE_CHECK, S.PLACE_CHECK_EXIT)
    },
    **{
        (stage, "GttSeen fired, order refused"): (
            S.SELLING_MARKET,
            [
                "RecordGttPlaced",
                "RecordGttTriggered",
                "RecordGttOrderFailed",
                "ShowError",
                "SellCall",
            ],
        )
        for stage in (S.PLACE_CHECK, S.PLACE_CHECK_EXIT)
    },
    (S.PLACE_CHECK, "GttLookupFailed"): (S.PLACE_CHECK, ["ShowError"]),
    (S.PLACE_CHECK_EXIT, "GttLookupFailed"): (S.PLACE_CHECK_EXIT, ["ShowError"]),
    (S.PLACE_CHECK, "ExitDecided"): (S.PLACE_CHECK_EXIT, []),
    (S.PLACE_CHECK, "ExitDecided emergency"): (S.PLACE_CHECK_EXIT, []),
    (S.PLACE_CHECK_EXIT, "ExitDecided emergency"): (S.PLACE_CHECK_EXIT, []),
    # --- protected: trailing, vanishing, firing ---
    (S.PROTECTED, "TrailDue"): (S.MODIFYING, ["ModifyGttCall"]),
    (S.PROTECTED, "GttSeen gone"): (S.UNPROTECTED, ["RecordGttVanished", "ShowError"]),
    (S.PROTECTED, "GttSeen deleted by hand"): (S.UNPROTECTED, ["RecordGttVanished", "ShowError"]),
    (S.MODIFYING, "GttModified"): (S.PROTECTED, ["RecordGttModified"]),
    (S.MODIFYING, "GttCallFailed"): (S.MODIFY_CHECK, ["ShowError", "FetchGttCall"]),
    (S.MODIFY_CHECK, "GttSeen active"): (S.PROTECTED, ["RecordGttModifyFailed"]),
    (S.MODIFY_CHECK, "GttSeen modified"): (S.PROTECTED, ["RecordGttModified"]),
    **{
        (S.MODIFY_CHECK, seen): (
            S.UNPROTECTED,
            ["RecordGttModifyFailed", "RecordGttVanished", "ShowError"],
        )
        for seen in ("GttSeen gone", "GttSeen deleted by hand")
    },
    (S.MODIFY_CHECK, "GttLookupFailed"): (S.MODIFY_CHECK, ["ShowError"]),
    **{
        (stage, exit_event): (S.DELETING, ["RecordExitIntent", "DeleteGttCall"])
        for stage in (S.PROTECTED, S.MODIFYING, S.MODIFY_CHECK)
        for exit_event in ("ExitDecided", "ExitDecided emergency")
    },
    **{
        (stage, "GttSeen fired"): (S.GTT_SELLING, ["RecordGttTriggered"])
        for stage in (S.PROTECTED, S.MODIFYING, S.MODIFY_CHECK, S.DELETING, S.DELETE_CHECK)
    },
    **{
        (stage, "GttSeen fired, order refused"): (
            S.SELLING_MARKET,
            ["RecordGttTriggered", "RecordGttOrderFailed", "ShowError", "SellCall"],
        )
        for stage in (S.PROTECTED, S.MODIFYING, S.MODIFY_CHECK, S.DELETING, S.DELETE_CHECK)
    },
    # --- cancel first: delete, then sell ---
    (S.DELETING, "GttDeleteAnswered active"): (S.SELLING, ["RecordGttDeleted", "SellCall"]),
    (S.DELETING, "GttDeleteAnswered triggered"): (S.DELETE_CHECK, ["FetchGttCall"]),
    (S.DELETING, "GttCallFailed"): (S.DELETE_CHECK, ["ShowError", "FetchGttCall"]),
    (S.DELETING, "ExitDecided emergency"): (S.DELETING, []),
    (S.DELETE_CHECK, "GttSeen gone"): (S.SELLING, ["RecordGttDeleted", "SellCall"]),
    (S.DELETE_CHECK, "GttSeen deleted by hand"): (S.SELLING, ["RecordGttDeleted", "SellCall"]),
    (S.DELETE_CHECK, "GttSeen active"): (S.DELETING, ["DeleteGttCall"]),
    (S.DELETE_CHECK, "GttSeen modified"): (S.DELETING, ["DeleteGttCall"]),
    (S.DELETE_CHECK, "GttLookupFailed"): (S.DELETE_CHECK, ["ShowError"]),
    (S.DELETE_CHECK, "ExitDecided emergency"): (S.DELETE_CHECK, []),
    # --- our sell ---
    **{
        (stage, "SellSent"): (S.SELLING, [])
        for stage in (S.SELLING, S.SELLING_MARKET, S.SELL_RETRY)
    },
    **{
        (stage, "SellNotSent"): (S.SELL_RETRY, [])
        for stage in (S.SELLING, S.SELLING_MARKET, S.SELL_RETRY)
    },
    **{
        (stage, "SellRefused"): (S.SELL_RETRY, ["RecordExitOrderNotFilled", "ShowError"])
        for stage in (S.SELLING, S.SELLING_MARKET)
    },
    **{
        (stage, "SellOrderSeen filled"): (S.CLOSED, ["RecordExitFill"])
        for stage in (S.SELLING, S.SELLING_MARKET)
    },
    **{
        (stage, "SellOrderSeen cancelled"): (
            S.SELL_RETRY,
            ["RecordExitOrderNotFilled", "ShowError"],
        )
        for stage in (S.SELLING, S.SELLING_MARKET)
    },
    **{
        (stage, "SellOrderSeen partly filled"): (stage, ["FailClosed"])
        for stage in (S.SELLING, S.SELLING_MARKET)
    },
    **{(stage, "SellOrderSeen open"): (stage, []) for stage in (S.SELLING, S.SELLING_MARKET)},
    **{
        (stage, "SellReplyLost"): (stage, ["ShowError", "FindOrderCall"])
        for stage in (S.SELLING, S.SELLING_MARKET)
    },
    **{
        (stage, "SellNotFound"): (S.SELL_RETRY, ["RecordExitOrderNotFilled", "ShowError"])
        for stage in (S.SELLING, S.SELLING_MARKET)
    },
    (S.SELLING, "Tick"): (S.SELLING_MARKET, ["ToMarketCall"]),  # exit_timeout_s reached
    (S.SELLING, "ExitDecided emergency"): (S.SELLING_MARKET, ["ToMarketCall"]),
    (S.SELLING_MARKET, "ToMarketAnswered ok"): (S.SELLING_MARKET, ["RecordOrderModified"]),
    (S.SELLING_MARKET, "ToMarketAnswered failed"): (S.SELLING, ["ShowError"]),
    (S.SELLING_MARKET, "ExitDecided emergency"): (S.SELLING_MARKET, []),
    (S.SELL_RETRY, "Tick"): (S.SELLING_MARKET, ["SellCall"]),  # after the pause, at market
    (S.SELL_RETRY, "ExitDecided emergency"): (S.SELL_RETRY, []),
    # --- the GTT's own order ---
    (S.GTT_SELLING, "GttOrderSeen filled"): (S.CLOSED, ["RecordExitFill"]),
    (S.GTT_SELLING_MARKET, "GttOrderSeen filled"): (S.CLOSED, ["RecordExitFill"]),
    **{
        (stage, "GttOrderSeen rejected"): (
            S.SELLING_MARKET,
            ["RecordGttOrderFailed", "ShowError", "SellCall"],
        )
        for stage in (S.GTT_SELLING, S.GTT_SELLING_MARKET)
    },
    **{
        (stage, "GttOrderSeen partly filled"): (stage, ["FailClosed"])
        for stage in (S.GTT_SELLING, S.GTT_SELLING_MARKET)
    },
    **{
        (stage, "GttOrderSeen open"): (stage, []) for stage in (S.GTT_SELLING, S.GTT_SELLING_MARKET)
    },
    (S.GTT_SELLING, "Tick"): (S.GTT_SELLING_MARKET, ["ToMarketCall"]),
    (S.GTT_SELLING, "ExitDecided emergency"): (S.GTT_SELLING_MARKET, ["ToMarketCall"]),
    (S.GTT_SELLING_MARKET, "ExitDecided emergency"): (S.GTT_SELLING_MARKET, []),
    (S.GTT_SELLING_MARKET, "ToMarketAnswered failed"): (S.GTT_SELLING, ["ShowError"]),
}

# Our own sell's answers arrive only right after we sent it: anywhere else, our picture
# of the leg is wrong, and the engine stops rather than guess.
REFUSED = {
    (stage, event)
    for stage in S
    if stage not in (S.SELLING, S.SELLING_MARKET, S.SELL_RETRY)
    for event in ("SellSent", "SellNotSent")
}


def intent_names(step: ev.Intent) -> list[str]:
    return [type(i).__name__ for i in step]


@pytest.mark.parametrize("stage", list(S), ids=lambda s: s.value)
@pytest.mark.parametrize("event_name", list(EVENTS))
def test_every_cell_is_handled_ignored_or_refused_on_purpose(stage, event_name):
    work = WORK[stage]
    assert work.stage is stage
    step = transition(work, EVENTS[event_name])
    if (stage, event_name) in HANDLED:
        expected_stage, expected_intents = HANDLED[(stage, event_name)]
        assert not step.ignored
        assert (step.work.stage, intent_names(step.intents)) == (expected_stage, expected_intents)
    elif (stage, event_name) in REFUSED:
        assert step.work == work
        assert intent_names(step.intents) == ["FailClosed"]
    else:
        assert step.ignored and step.work == work and step.intents == [], (
            f"{stage.value} × {event_name} is not in the table: decide it"
        )


def test_the_table_names_only_real_stages_and_events():
    assert {event for _, event in HANDLED | dict.fromkeys(REFUSED)} <= set(EVENTS)
    assert set(WORK) == set(S)


# --- sequences: the cases a broker really produces, event after event ---------------------------


def run(work: LegWork, *events: ev.Event) -> tuple[LegWork, list[ev.Intent]]:
    intents: list[ev.Intent] = []
    for event in events:
        step = transition(work, event)
        work = step.work
        intents += step.intents
    return work, intents


def test_a_fired_gtt_whose_order_kite_refused_is_sold_at_market_once():
    fired = replace(WORK[S.GTT_SELLING], exit_order_id=None, exit_since=None)
    work, intents = run(fired, EVENTS["GttSeen fired, order refused"])
    assert work.stage is S.SELLING_MARKET and work.gtt_id is None
    failed, shown, sell = intents
    assert "lower circuit limit" in failed.message and "selling at market" in shown.message
    assert sell == ev.SellCall(market=True, urgent=False)
    again, more = run(work, EVENTS["GttSeen fired, order refused"])  # the next listing
    assert again == work and more == []


def test_a_lost_delete_reply_is_settled_by_the_gtt_then_sold_once():
    work, intents = run(WORK[S.DELETING], ev.GttCallFailed("read timed out"), ev.GttSeen(None, T1))
    assert work.stage is S.SELLING
    assert intent_names(intents) == ["ShowError", "FetchGttCall", "RecordGttDeleted", "SellCall"]


def test_a_lost_delete_reply_with_the_gtt_still_active_deletes_it_again():
    work, intents = run(
        WORK[S.DELETING], ev.GttCallFailed("read timed out"), EVENTS["GttSeen active"]
    )
    assert work.stage is S.DELETING
    assert intents[-1] == ev.DeleteGttCall(101, urgent=False)


def test_a_modify_refused_for_the_quarter_percent_rule_keeps_the_old_gtt():
    work, intents = run(
        WORK[S.MODIFYING],
        ev.GttCallFailed("Trigger price is too close to the last price"),
        EVENTS["GttSeen active"],  # the broker kept the old triggers
    )
    assert work.stage is S.PROTECTED and work.terms is None
    assert intent_names(intents) == ["ShowError", "FetchGttCall", "RecordGttModifyFailed"]


@pytest.mark.parametrize(
    "ended",
    [
        pytest.param(EVENTS["SellRefused"], id="refused (circuit)"),
        pytest.param(EVENTS["SellOrderSeen cancelled"], id="cancelled by the exchange"),
    ],
)
def test_a_sell_that_sold_nothing_is_sold_again_at_market_after_a_pause(ended):
    work, intents = run(WORK[S.SELLING], ended)
    assert work.stage is S.SELL_RETRY and work.exit_tag is None
    early, nothing = run(work, ev.Tick(T1 + timedelta(seconds=4), timedelta(seconds=30)))
    assert early == work and nothing == []
    work, intents = run(work, ev.Tick(T1 + timedelta(seconds=5), timedelta(seconds=30)))
    assert intents == [ev.SellCall(market=True, urgent=False)]


def test_an_order_update_before_the_placement_reply_records_the_order_once():
    sent = replace(WORK[S.SELLING], exit_order_id=None)
    update = ev.SellOrderSeen(order("S9", EXIT, OrderState.OPEN), T1)
    work, intents = run(sent, update, update)  # the update, then the placement's reply
    assert work.exit_order_id == "S9"
    assert intents == [ev.RecordOrderSent(EXIT, "S9", T1)]


def test_late_and_duplicate_updates_change_nothing():
    closed, _ = run(WORK[S.SELLING], EVENTS["SellOrderSeen filled"])
    assert closed.stage is S.CLOSED
    for late in ("SellOrderSeen filled", "SellOrderSeen open", "GttOrderSeen filled"):
        assert transition(closed, EVENTS[late]).ignored
    acked, _ = run(WORK[S.ENTERING], EVENTS["BuyAcked"])
    assert transition(acked, EVENTS["BuyAcked"]).ignored
    bought, _ = run(acked, EVENTS["BuyFilled"])
    assert transition(bought, EVENTS["BuyFilled"]).ignored


def test_an_emergency_on_a_leg_being_deleted_sells_it_urgently_at_market():
    work, _ = run(WORK[S.DELETING], EVENTS["ExitDecided emergency"])
    work, intents = run(work, EVENTS["GttDeleteAnswered active"])
    assert intents[-1] == ev.SellCall(market=True, urgent=True)


def test_a_market_sell_held_back_while_trading_is_stopped_is_sent_at_market():
    """A fired GTT's refused order found while reconciling: the sell waits, then goes at market."""
    decided, _ = run(
        replace(WORK[S.GTT_SELLING], exit_order_id=None), EVENTS["GttSeen fired, order refused"]
    )
    held, _ = run(decided, ev.SellNotSent("trading is stopped", T1, market=True))
    assert held.stage is S.SELL_RETRY
    _, intents = run(held, ev.Tick(T1, timedelta(seconds=30)))
    assert intents == [ev.SellCall(market=True, urgent=False)]


def test_a_limit_sell_held_back_while_trading_is_stopped_is_sent_as_decided():
    held, _ = run(WORK[S.SELLING], ev.SellNotSent("trading is stopped", T1))
    _, intents = run(held, ev.Tick(T1, timedelta(seconds=30)))
    assert intents == [ev.SellCall(market=False, urgent=False)]


def test_the_timer_moves_only_the_timed_stages():
    """The engine ticks only TIMED legs: in every other stage a tick must change nothing."""
    for stage in S:
        step = transition(WORK[stage], EVENTS["Tick"])
        assert (stage in TIMED) == (not step.ignored), stage
