"""A leg's exit in its lifecycle: cancel first, then our sell, or the fired GTT's own order.

Transitions of leg_lifecycle.py from the decision to exit to the fill: the GTT is
deleted before we sell (a GTT that fired meanwhile sells the leg instead), a sell that
sold nothing is sold again at market, an exit order still open after exit_timeout_s
becomes a MARKET order, and an emergency hurries all of it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from Webapp.broker.base import GttState, Order, OrderState
from Webapp.execution.leg_events import (
    CancelBuyCall,
    DeleteGttCall,
    ExitDecided,
    FailClosed,
    FetchGttCall,
    FindOrderCall,
    GttDeleteAnswered,
    GttOrderSeen,
    Intent,
    ListGttsCall,
    RecordExitFill,
    RecordExitIntent,
    RecordExitOrderNotFilled,
    RecordOrderModified,
    RecordOrderSent,
    SellCall,
    SellNotFound,
    SellNotSent,
    SellOrderSeen,
    SellRefused,
    SellReplyLost,
    SellSent,
    ShowError,
    Tick,
    ToMarketAnswered,
    ToMarketCall,
)
from Webapp.execution.leg_protection import deleted_then_sell, gtt_sold_nothing
from Webapp.execution.leg_stages import (
    FINAL,
    RETRY_AFTER,
    LegWork,
    Stage,
    Step,
    ignore,
    refuse,
)
from Webapp.states import ExitReason, OrderIntentState


def gtt_delete_answered(work: LegWork, event: GttDeleteAnswered) -> Step:
    if work.stage is not Stage.DELETING:
        return ignore(work)
    if event.state is GttState.TRIGGERED:
        # It fired before our delete: its own order sells the leg. Learn which order.
        assert work.gtt_id is not None
        return Step(replace(work, stage=Stage.DELETE_CHECK), [FetchGttCall(work.gtt_id)])
    return deleted_then_sell(work, event.at)


def exit_decided(work: LegWork, event: ExitDecided) -> Step:
    reason = event.reason
    urgent = reason is ExitReason.EMERGENCY
    stage = work.stage
    if stage is Stage.ENTERING:
        if urgent and work.entry_order_id:
            return Step(work, [CancelBuyCall(work.entry_order_id)])
        return ignore(work)
    if stage is Stage.UNPROTECTED:
        return Step(
            replace(work, stage=Stage.SELLING, exit_reason=reason),
            [RecordExitIntent(reason), SellCall(urgent, urgent)],
        )
    if stage is Stage.PLACING:
        return Step(replace(work, stage=Stage.PLACING_EXIT, exit_reason=reason))
    if stage is Stage.PLACE_CHECK:
        return Step(replace(work, stage=Stage.PLACE_CHECK_EXIT, exit_reason=reason))
    if stage in (Stage.PROTECTED, Stage.MODIFYING, Stage.MODIFY_CHECK):
        assert work.gtt_id is not None
        return Step(
            replace(work, stage=Stage.DELETING, exit_reason=reason, terms=None),
            [RecordExitIntent(reason), DeleteGttCall(work.gtt_id, urgent)],
        )
    if not urgent or stage in FINAL or work.urgent:
        return ignore(work)  # already exiting (or already in an emergency)
    # An emergency on a leg already exiting: what sells it from now on is urgent and at
    # market; an order already resting is turned into a MARKET order now.
    hurried = replace(work, exit_reason=reason)
    if stage is Stage.SELLING and work.exit_order_id:
        return Step(
            replace(hurried, stage=Stage.SELLING_MARKET), [ToMarketCall(work.exit_order_id, True)]
        )
    if stage is Stage.GTT_SELLING and work.exit_order_id:
        return Step(
            replace(hurried, stage=Stage.GTT_SELLING_MARKET),
            [ToMarketCall(work.exit_order_id, True)],
        )
    if stage is Stage.SELL_RETRY:
        return Step(replace(hurried, retry_at=None))
    return Step(hurried)


def sell_sent(work: LegWork, event: SellSent) -> Step:
    if work.stage not in (Stage.SELLING, Stage.SELLING_MARKET, Stage.SELL_RETRY):
        return refuse(work, event)
    stage = Stage.SELLING_MARKET if event.market else Stage.SELLING
    return Step(
        replace(
            work,
            stage=stage,
            exit_tag=event.tag,
            exit_order_id=None,
            exit_since=event.at,
            retry_at=None,
        )
    )


def sell_not_sent(work: LegWork, event: SellNotSent) -> Step:
    if work.stage not in (Stage.SELLING, Stage.SELLING_MARKET, Stage.SELL_RETRY):
        return refuse(work, event)
    # SELL_RETRY sends at market once retry_at has passed, as decided when it is None: a
    # sell decided at market (a fired GTT's refused order) stays at market when held back.
    retry_at = event.at + RETRY_AFTER if event.refused else (event.at if event.market else None)
    return Step(
        replace(work, stage=Stage.SELL_RETRY, exit_tag=None, exit_order_id=None, retry_at=retry_at),
        [ShowError(f"{work.name}: sell not sent: {event.message}")] if event.refused else [],
    )


def sell_order_seen(work: LegWork, event: SellOrderSeen) -> Step:
    if work.stage not in (Stage.SELLING, Stage.SELLING_MARKET) or work.exit_tag is None:
        return ignore(work)
    order, at = event.order, event.at
    if order.tag != work.exit_tag:
        return ignore(work)  # an earlier sell of this leg, already settled
    intents: list[Intent] = []
    known = work
    if work.exit_order_id is None:
        known = replace(work, exit_order_id=order.order_id)
        if order.state is not OrderState.FILLED:
            intents.append(RecordOrderSent(work.exit_tag, order.order_id, at))
    if order.state is OrderState.FILLED:
        return Step(
            replace(known, stage=Stage.CLOSED),
            [
                *intents,
                exit_fill(order, at, work.exit_tag, market=work.stage is Stage.SELLING_MARKET),
            ],
        )
    if order.state.is_final and order.filled_quantity == 0:
        message = order.status_message or order.state.value
        return _sell_unfilled(known, OrderIntentState(order.state.value), message, at, intents)
    if order.state.is_final:
        return Step(
            known,
            [
                *intents,
                FailClosed(
                    f"{work.name}: sell {work.exit_tag} filled {order.filled_quantity} of "
                    f"{order.quantity} and ended; partial exits are not handled: sell the "
                    "rest by hand, then start again"
                ),
            ],
        )
    return Step(known, intents)


def _sell_unfilled(
    work: LegWork, state: OrderIntentState, message: str, at: datetime, before: list[Intent]
) -> Step:
    """Our sell ended with nothing sold: the leg is sold again at market shortly."""
    assert work.exit_tag is not None
    return Step(
        replace(
            work,
            stage=Stage.SELL_RETRY,
            exit_tag=None,
            exit_order_id=None,
            exit_since=None,
            retry_at=at + RETRY_AFTER,
        ),
        [
            *before,
            RecordExitOrderNotFilled(work.exit_tag, state, message[:255]),
            ShowError(
                f"{work.name}: sell {state.value}: {message}; selling again at market shortly"
            ),
        ],
    )


def sell_refused(work: LegWork, event: SellRefused) -> Step:
    if work.stage not in (Stage.SELLING, Stage.SELLING_MARKET) or work.exit_tag is None:
        return ignore(work)
    return _sell_unfilled(work, OrderIntentState.REJECTED, event.message, event.at, [])


def sell_reply_lost(work: LegWork, event: SellReplyLost) -> Step:
    if work.stage not in (Stage.SELLING, Stage.SELLING_MARKET) or work.exit_tag is None:
        return ignore(work)
    return Step(
        work,
        [
            ShowError(f"{work.name}: sell reply lost ({event.message}); looking it up by tag"),
            FindOrderCall(work.exit_tag),
        ],
    )


def sell_not_found(work: LegWork, event: SellNotFound) -> Step:
    if work.stage not in (Stage.SELLING, Stage.SELLING_MARKET) or work.exit_tag is None:
        return ignore(work)
    return _sell_unfilled(
        work, OrderIntentState.CANCELLED, "not found at the broker after a lost reply", event.at, []
    )


def gtt_order_seen(work: LegWork, event: GttOrderSeen) -> Step:
    if work.stage not in (Stage.GTT_SELLING, Stage.GTT_SELLING_MARKET):
        return ignore(work)
    order, at = event.order, event.at
    if work.exit_order_id is not None and order.order_id != work.exit_order_id:
        return ignore(work)
    known = replace(work, exit_order_id=order.order_id)
    if order.state is OrderState.FILLED:
        return Step(
            replace(known, stage=Stage.CLOSED),
            [exit_fill(order, at, None, market=work.stage is Stage.GTT_SELLING_MARKET)],
        )
    if order.state.is_final and order.filled_quantity == 0:
        message = order.status_message or order.state.value
        return gtt_sold_nothing(known, f"its sell ended unfilled ({message})", at, [])
    if order.state.is_final:
        return Step(
            known,
            [
                FailClosed(
                    f"{work.name}: the GTT's sell filled {order.filled_quantity} of "
                    f"{order.quantity} and ended; partial exits are not handled: sell the "
                    "rest by hand, then start again"
                )
            ],
        )
    if known.exit_since is None:
        known = replace(known, exit_since=at)
    return Step(known)


def to_market_answered(work: LegWork, event: ToMarketAnswered) -> Step:
    if work.stage is Stage.SELLING_MARKET and event.ok and work.exit_tag:
        return Step(work, [RecordOrderModified(work.exit_tag)])
    if event.ok or work.stage not in (Stage.SELLING_MARKET, Stage.GTT_SELLING_MARKET):
        return ignore(work)
    back = Stage.SELLING if work.stage is Stage.SELLING_MARKET else Stage.GTT_SELLING
    return Step(
        replace(work, stage=back),  # tried again on the next tick
        [ShowError(f"{work.name}: exit order to market failed: {event.message}")],
    )


def tick(work: LegWork, event: Tick) -> Step:
    now = event.now
    stage = work.stage
    # An exit order rests at most exit_timeout; in an emergency not at all.
    due = work.urgent or (
        work.exit_since is not None and now - work.exit_since >= event.exit_timeout
    )
    if stage is Stage.SELLING and work.exit_order_id and due:
        return Step(
            replace(work, stage=Stage.SELLING_MARKET),
            [ToMarketCall(work.exit_order_id, work.urgent)],
        )
    if stage is Stage.GTT_SELLING and work.exit_order_id and due:
        return Step(
            replace(work, stage=Stage.GTT_SELLING_MARKET),
            [ToMarketCall(work.exit_order_id, work.urgent)],
        )
    if stage is Stage.GTT_SELLING and work.exit_order_id is None:
        return Step(work, [ListGttsCall()])  # learn which order the fired GTT placed
    if stage is Stage.SELL_RETRY and (work.retry_at is None or now >= work.retry_at):
        # Held back while trading was stopped: sent as first decided. After a refusal or an
        # unfilled sell (retry_at set): at market.
        market = work.urgent or work.retry_at is not None
        return Step(
            replace(work, stage=Stage.SELLING_MARKET if market else Stage.SELLING, retry_at=None),
            [SellCall(market, work.urgent)],
        )
    return ignore(work)


def exit_fill(order: Order, heard_at: datetime, tag: str | None, *, market: bool) -> RecordExitFill:
    """The sale `order` made (ours with `tag`, or the GTT's own), at the broker's own fill
    time when it gives one: a leg sold while the app was down closes at the fill, not at
    the restart."""
    return RecordExitFill(
        order.average_price,
        order.filled_quantity,
        order.updated_at or heard_at,
        tag,
        order.order_id,
        market=market,
    )
