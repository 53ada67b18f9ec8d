"""A leg's lifecycle at the broker: what it waits for, and one pure function that moves it.

`transition(work, event) -> Step(work, intents)` is the only way a leg's broker-side state
changes. `Stage` says what the leg is waiting for; `LegWork` adds the ids that stage
refers to (its orders, its GTT, the terms of a GTT call in flight). Every stage × event
pair is handled, ignored on purpose (a late or duplicate answer about something already
settled: `IGNORED`), or refused: the leg keeps its stage and the intents ask the engine
to fail closed with the reason. Nothing here calls the broker, reads the clock, or
writes the database: the trader carries out the intents in order, each write before the
call that depends on it, and turns every answer back into an event.

The shape follows an order state table (NautilusTrader keeps one per order); here it is
per leg, because the leg is what the trader protects: its buy, its GTT and its sell.
"""

from __future__ import annotations

from dataclasses import replace

from Webapp.execution import leg_exits as exits
from Webapp.execution import leg_protection as protection
from Webapp.execution.leg_events import (
    BuyAcked,
    BuyEnded,
    BuyFilled,
    BuyReplyLost,
    Event,
    ExitDecided,
    FindOrderCall,
    GttCallFailed,
    GttDeleteAnswered,
    GttLookupFailed,
    GttModified,
    GttOrderSeen,
    GttPlaced,
    GttRefused,
    GttReplyLost,
    GttSeen,
    PlaceGttCall,
    Protect,
    RecordEntryCancelled,
    RecordEntryFill,
    RecordOrderSent,
    SellNotFound,
    SellNotSent,
    SellOrderSeen,
    SellRefused,
    SellReplyLost,
    SellSent,
    ShowError,
    Tick,
    ToMarketAnswered,
    TrailDue,
)
from Webapp.execution.leg_stages import (
    FINAL,
    LISTING_SETTLES,
    TIMED,
    LegWork,
    Stage,
    Step,
    ignore,
)

__all__ = ["FINAL", "LISTING_SETTLES", "TIMED", "LegWork", "Stage", "Step", "transition"]


# --- the transition function ---------------------------------------------------------------


def transition(work: LegWork, event: Event) -> Step:
    """The leg after `event`, and what the engine must do about it."""
    handler = _HANDLERS[type(event)]
    return handler(work, event)


def _buy_acked(work: LegWork, event: BuyAcked) -> Step:
    if work.stage is not Stage.ENTERING or work.entry_order_id is not None:
        return ignore(work)
    assert work.entry_tag is not None
    return Step(
        replace(work, entry_order_id=event.order_id),
        [RecordOrderSent(work.entry_tag, event.order_id, event.at)],
    )


def _buy_filled(work: LegWork, event: BuyFilled) -> Step:
    if work.stage is not Stage.ENTERING:
        return ignore(work)  # a duplicate fill update
    order_id = event.order_id or work.entry_order_id
    record = RecordEntryFill(event.qty, event.price, event.at, order_id)
    bought = replace(work, entry_order_id=order_id)
    if event.gtt is None:
        return Step(replace(bought, stage=Stage.UNPROTECTED, retry_at=None), [record])
    return Step(
        replace(bought, stage=Stage.PLACING, terms=event.gtt), [record, PlaceGttCall(event.gtt)]
    )


def _buy_ended(work: LegWork, event: BuyEnded) -> Step:
    if work.stage is not Stage.ENTERING:
        return ignore(work)
    return Step(
        replace(work, stage=Stage.CANCELLED), [RecordEntryCancelled(event.state, event.message)]
    )


def _buy_reply_lost(work: LegWork, event: BuyReplyLost) -> Step:
    if work.stage is not Stage.ENTERING or work.entry_tag is None:
        return ignore(work)
    return Step(
        work,
        [
            ShowError(f"{work.name}: buy reply lost ({event.message}); looking it up by tag"),
            FindOrderCall(work.entry_tag),
        ],
    )


_HANDLERS = {
    BuyAcked: _buy_acked,
    BuyFilled: _buy_filled,
    BuyEnded: _buy_ended,
    BuyReplyLost: _buy_reply_lost,
    Protect: protection.protect,
    GttPlaced: protection.gtt_placed,
    GttRefused: protection.gtt_refused,
    GttReplyLost: protection.gtt_reply_lost,
    TrailDue: protection.trail_due,
    GttModified: protection.gtt_modified,
    GttCallFailed: protection.gtt_call_failed,
    GttDeleteAnswered: exits.gtt_delete_answered,
    GttSeen: protection.gtt_seen,
    GttLookupFailed: protection.gtt_lookup_failed,
    ExitDecided: exits.exit_decided,
    SellSent: exits.sell_sent,
    SellNotSent: exits.sell_not_sent,
    SellRefused: exits.sell_refused,
    SellOrderSeen: exits.sell_order_seen,
    SellReplyLost: exits.sell_reply_lost,
    SellNotFound: exits.sell_not_found,
    GttOrderSeen: exits.gtt_order_seen,
    ToMarketAnswered: exits.to_market_answered,
    Tick: exits.tick,
}
