"""A leg's GTT in its lifecycle: placing it, trailing it, and what the broker says about it.

Transitions of leg_lifecycle.py for the protection at the broker: a placement and its
lost reply, a modify and its refusal, a GTT that vanished (deleted by hand on Kite's
site), and one that fired, with or without the order it should have placed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from Webapp.broker.base import Gtt, GttState
from Webapp.execution.leg_events import (
    DeleteGttCall,
    FetchGttCall,
    GttCallFailed,
    GttLookupFailed,
    GttModified,
    GttPlaced,
    GttRefused,
    GttReplyLost,
    GttSeen,
    Intent,
    ListGttsCall,
    ModifyGttCall,
    PlaceGttCall,
    Protect,
    RecordExitIntent,
    RecordGttDeleted,
    RecordGttModified,
    RecordGttModifyFailed,
    RecordGttOrderFailed,
    RecordGttPlaced,
    RecordGttPlaceFailed,
    RecordGttTriggered,
    RecordGttVanished,
    SellCall,
    ShowError,
    TrailDue,
)
from Webapp.execution.leg_stages import (
    CHECKING,
    GTT_FIRED,
    GTT_GONE,
    HOLDS_GTT,
    LISTING_SETTLES,
    RETRY_AFTER,
    LegWork,
    Stage,
    Step,
    ignore,
)
from Webapp.states import ExitReason
from Webapp.strategy.actions import ModifyGtt


def protect(work: LegWork, event: Protect) -> Step:
    if work.stage is not Stage.UNPROTECTED:
        return ignore(work)
    return Step(replace(work, stage=Stage.PLACING, terms=event.gtt), [PlaceGttCall(event.gtt)])


def _placed(work: LegWork, gtt_id: int, at: datetime) -> Step:
    """The GTT with the terms in flight exists at the broker."""
    terms, row_id = work.terms, work.gtt_row_id
    assert terms is not None and row_id is not None
    protected = replace(work, gtt_id=gtt_id, terms=None, retry_at=None)
    record = RecordGttPlaced(row_id, gtt_id, terms.triggers, at)
    if work.stage in (Stage.PLACING_EXIT, Stage.PLACE_CHECK_EXIT):
        assert work.exit_reason is not None
        return Step(
            replace(protected, stage=Stage.DELETING),
            [record, RecordExitIntent(work.exit_reason), DeleteGttCall(gtt_id, work.urgent)],
        )
    return Step(replace(protected, stage=Stage.PROTECTED), [record])


def _not_placed(work: LegWork, message: str, retry_at: datetime | None) -> Step:
    """No GTT came of the placement: retry later, or sell when the exit was decided."""
    assert work.gtt_row_id is not None
    record = RecordGttPlaceFailed(work.gtt_row_id, message)
    bare = replace(work, gtt_row_id=None, gtt_id=None, terms=None)
    if work.stage in (Stage.PLACING_EXIT, Stage.PLACE_CHECK_EXIT):
        assert work.exit_reason is not None
        return Step(
            replace(bare, stage=Stage.SELLING),
            [record, RecordExitIntent(work.exit_reason), SellCall(work.urgent, work.urgent)],
        )
    return Step(
        replace(bare, stage=Stage.UNPROTECTED, retry_at=retry_at),
        [
            record,
            ShowError(f"{work.name}: GTT not placed: {message}; the engine's stop guards the leg"),
        ],
    )


def gtt_placed(work: LegWork, event: GttPlaced) -> Step:
    if work.stage not in (Stage.PLACING, Stage.PLACING_EXIT):
        return ignore(work)
    return _placed(work, event.gtt_id, event.at)


def gtt_refused(work: LegWork, event: GttRefused) -> Step:
    if work.stage not in (Stage.PLACING, Stage.PLACING_EXIT):
        return ignore(work)
    return _not_placed(work, event.message, event.at + RETRY_AFTER)


def gtt_reply_lost(work: LegWork, event: GttReplyLost) -> Step:
    if work.stage not in (Stage.PLACING, Stage.PLACING_EXIT):
        return ignore(work)
    checking = Stage.PLACE_CHECK if work.stage is Stage.PLACING else Stage.PLACE_CHECK_EXIT
    return Step(
        replace(work, stage=checking),
        [
            ShowError(f"{work.name}: GTT placement reply lost ({event.message}); listing GTTs"),
            ListGttsCall(),
        ],
    )


def trail_due(work: LegWork, event: TrailDue) -> Step:
    if work.stage is not Stage.PROTECTED:
        return ignore(work)
    assert work.gtt_row_id is not None and work.gtt_id is not None
    return Step(
        replace(work, stage=Stage.MODIFYING, terms=event.modify),
        [ModifyGttCall(work.gtt_row_id, work.gtt_id, event.modify)],
    )


def gtt_modified(work: LegWork, event: GttModified) -> Step:
    if work.stage is not Stage.MODIFYING:
        return ignore(work)  # an exit took the GTT over meanwhile
    modify = work.terms
    assert isinstance(modify, ModifyGtt) and work.gtt_row_id is not None
    return Step(
        replace(work, stage=Stage.PROTECTED, terms=None),
        [RecordGttModified(work.gtt_row_id, modify, event.at)],
    )


def gtt_call_failed(work: LegWork, event: GttCallFailed) -> Step:
    if work.stage is Stage.MODIFYING:
        checking, what = Stage.MODIFY_CHECK, "modify"
    elif work.stage is Stage.DELETING:
        checking, what = Stage.DELETE_CHECK, "delete"
    else:
        return ignore(work)
    assert work.gtt_id is not None
    return Step(
        replace(work, stage=checking),
        [
            ShowError(
                f"{work.name}: GTT {what} failed: {event.message}; checking the GTT at the broker"
            ),
            FetchGttCall(work.gtt_id),
        ],
    )


def deleted_then_sell(work: LegWork, at: datetime) -> Step:
    """Cancel first: the GTT is confirmed gone while active, so now we sell (once)."""
    assert work.gtt_row_id is not None
    return Step(
        replace(work, stage=Stage.SELLING, gtt_row_id=None, gtt_id=None, terms=None),
        [RecordGttDeleted(work.gtt_row_id, at), SellCall(work.urgent, work.urgent)],
    )


def gtt_seen(work: LegWork, event: GttSeen) -> Step:
    gtt, at = event.gtt, event.at
    state = None if gtt is None else gtt.state
    if work.stage not in HOLDS_GTT and work.stage not in GTT_FIRED:
        return ignore(work)  # the leg has no GTT at the broker (any more, or yet)
    if work.stage in GTT_FIRED and work.exit_order_id is not None:
        return ignore(work)  # its order is known: that order's own updates decide
    if state is GttState.TRIGGERED and gtt is not None:
        # Certain whatever is in flight: a fired GTT never comes back.
        if work.stage in (Stage.PLACE_CHECK, Stage.PLACE_CHECK_EXIT):
            # Placed, then fired before we heard of it (say, across a restart).
            assert work.terms is not None and work.gtt_row_id is not None
            placed = RecordGttPlaced(work.gtt_row_id, gtt.gtt_id, work.terms.triggers, at)
            step = _fired(replace(work, stage=Stage.PROTECTED, gtt_id=gtt.gtt_id), gtt, at)
            return Step(step.work, [placed, *step.intents])
        return _fired(work, gtt, at)
    if work.stage not in LISTING_SETTLES or work.stage is Stage.GTT_SELLING:
        return ignore(work)  # a call in flight settles itself; a fired GTT stays fired
    if work.stage in (Stage.PLACE_CHECK, Stage.PLACE_CHECK_EXIT):
        if gtt is not None and state is GttState.ACTIVE:
            return _placed(work, gtt.gtt_id, at)
        # Never reached the broker: placed again on the next price, without a pause.
        return _not_placed(work, "not found at the broker after a lost reply", None)
    gone = state is None or state in GTT_GONE
    if work.stage is Stage.DELETE_CHECK:
        if gone:
            return deleted_then_sell(work, at)
        assert work.gtt_id is not None
        return Step(replace(work, stage=Stage.DELETING), [DeleteGttCall(work.gtt_id, work.urgent)])
    if work.stage is Stage.MODIFY_CHECK:
        if gone or gtt is None:
            return _vanished(work, state, modified=True)
        modify, row_id = work.terms, work.gtt_row_id
        assert isinstance(modify, ModifyGtt) and row_id is not None
        if same(gtt.triggers, modify.triggers):
            return Step(
                replace(work, stage=Stage.PROTECTED, terms=None),
                [RecordGttModified(row_id, modify, at)],
            )
        return Step(
            replace(work, stage=Stage.PROTECTED, terms=None),
            [RecordGttModifyFailed(row_id, "the broker kept the old triggers")],
        )
    # PROTECTED
    if gone:
        return _vanished(work, state, modified=False)
    return ignore(work)


def _vanished(work: LegWork, state: GttState | None, *, modified: bool) -> Step:
    """The GTT is no longer at the broker although we did not delete it: place a new one."""
    seen = state.value if state is not None else "missing"
    row_id = work.gtt_row_id
    assert row_id is not None
    intents: list[Intent] = []
    if modified:
        intents.append(RecordGttModifyFailed(row_id, "GTT gone"))
    intents += [
        RecordGttVanished(row_id, f"not active at the broker ({seen})"),
        ShowError(f"{work.name}: GTT no longer at the broker ({seen}); placing a new one"),
    ]
    return Step(
        replace(work, stage=Stage.UNPROTECTED, gtt_row_id=None, gtt_id=None, terms=None), intents
    )


def _fired(work: LegWork, gtt: Gtt, at: datetime) -> Step:
    """The GTT triggered at the broker: its own order sells the leg; we never sell it too,
    unless the broker refused that order (then nothing else will sell it)."""
    result = gtt.results[0] if gtt.results else None
    intents: list[Intent] = []
    fired = work
    if work.stage not in (Stage.GTT_SELLING, Stage.GTT_SELLING_MARKET):
        index = result.leg if result is not None else _fired_index(gtt)
        reason = ExitReason.TARGET if index == 1 else ExitReason.STOP_GTT
        assert work.gtt_row_id is not None
        intents.append(RecordGttTriggered(work.gtt_row_id, index, at))
        fired = replace(
            work,
            stage=Stage.GTT_SELLING,
            terms=None,
            exit_reason=reason,
            exit_tag=None,
            exit_order_id=None,
            exit_since=None,
        )
    if result is not None and not result.order_id and result.status == "failed":
        why = f"the broker refused it: {result.rejection_reason or 'no reason given'}"
        return gtt_sold_nothing(fired, why, at, intents)
    if result is not None and result.order_id and fired.exit_order_id is None:
        fired = replace(fired, exit_order_id=result.order_id)
    return Step(fired, intents)


def _fired_index(gtt: Gtt) -> int:
    # Without a result yet, the trigger nearer to the GTT's last price is the likelier one;
    # a single-leg GTT has only its stop.
    return 0 if len(gtt.triggers) < 2 else int(gtt.last_price >= gtt.triggers[1])


def gtt_sold_nothing(work: LegWork, why: str, at: datetime, before: list[Intent]) -> Step:
    assert work.gtt_row_id is not None
    return Step(
        replace(
            work,
            stage=Stage.SELLING_MARKET,
            gtt_row_id=None,
            gtt_id=None,
            exit_order_id=None,
            exit_since=None,
        ),
        [
            *before,
            RecordGttOrderFailed(work.gtt_row_id, why[:255], at),
            ShowError(f"{work.name}: the GTT fired but {why}; selling at market"),
            SellCall(True, work.urgent),
        ],
    )


def gtt_lookup_failed(work: LegWork, event: GttLookupFailed) -> Step:
    if work.stage not in CHECKING:
        return ignore(work)
    return Step(
        work,
        [ShowError(f"{work.name}: GTT state unknown ({event.message}); will look again")],
    )


def same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))
