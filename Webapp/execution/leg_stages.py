"""A leg's stages (what it waits for), its work (the ids a stage refers to) and a step's result.

The vocabulary of the lifecycle (leg_lifecycle.py); leg_protection.py and leg_exits.py
hold the transitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from Webapp.broker.base import GttState
from Webapp.execution.leg_events import (
    Event,
    FailClosed,
    Intent,
)
from Webapp.states import ExitReason, LegState
from Webapp.strategy.actions import ModifyGtt, PlaceGtt

# A refused GTT placement or an unfilled sell is tried again after this long.
RETRY_AFTER = timedelta(seconds=5)
GTT_GONE = frozenset(
    {GttState.DELETED, GttState.CANCELLED, GttState.EXPIRED, GttState.DISABLED, GttState.REJECTED}
)


class Stage(StrEnum):
    """What a leg is waiting for."""

    ENTERING = "entering"  # its buy is sent (or about to be): waiting for the fill
    UNPROTECTED = "unprotected"  # bought, no GTT and none in flight: placed on a later price
    PLACING = "placing"  # place_gtt in flight
    PLACING_EXIT = "placing_exit"  # place_gtt in flight, and an exit was decided meanwhile
    PLACE_CHECK = "place_check"  # the placement's reply was lost: the GTT list decides
    PLACE_CHECK_EXIT = "place_check_exit"  # the same, with an exit decided meanwhile
    PROTECTED = "protected"  # its GTT is active at the broker
    MODIFYING = "modifying"  # modify_gtt in flight; the old triggers still protect
    MODIFY_CHECK = "modify_check"  # the modify failed or its reply was lost: the GTT decides
    DELETING = "deleting"  # exit decided: delete_gtt in flight (cancel first, then sell)
    DELETE_CHECK = "delete_check"  # the delete failed, was lost or found it fired: the GTT decides
    SELLING = "selling"  # our LIMIT sell in flight or resting
    SELLING_MARKET = "selling_market"  # our sell is (or is being turned into) a MARKET order
    SELL_RETRY = "sell_retry"  # our sell ended unfilled or could not be sent: sold again soon
    GTT_SELLING = "gtt_selling"  # the GTT fired: its own LIMIT order sells the leg
    GTT_SELLING_MARKET = "gtt_selling_market"  # that order is (being) turned into a MARKET order
    CLOSED = "closed"  # sold
    CANCELLED = "cancelled"  # the buy never filled


# What each stage means to the rules and to the trades table (the coarse LegState).
LEG_STATE = {
    Stage.ENTERING: LegState.PENDING_ENTRY,
    Stage.UNPROTECTED: LegState.PROTECTING,
    Stage.PLACING: LegState.PROTECTING,
    Stage.PLACE_CHECK: LegState.PROTECTING,
    Stage.PROTECTED: LegState.OPEN,
    Stage.MODIFYING: LegState.OPEN,
    Stage.MODIFY_CHECK: LegState.OPEN,
    Stage.PLACING_EXIT: LegState.PENDING_EXIT,
    Stage.PLACE_CHECK_EXIT: LegState.PENDING_EXIT,
    Stage.DELETING: LegState.PENDING_EXIT,
    Stage.DELETE_CHECK: LegState.PENDING_EXIT,
    Stage.SELLING: LegState.PENDING_EXIT,
    Stage.SELLING_MARKET: LegState.PENDING_EXIT,
    Stage.SELL_RETRY: LegState.PENDING_EXIT,
    Stage.GTT_SELLING: LegState.PENDING_EXIT,
    Stage.GTT_SELLING_MARKET: LegState.PENDING_EXIT,
    Stage.CLOSED: LegState.CLOSED,
    Stage.CANCELLED: LegState.CANCELLED,
}
FINAL = frozenset({Stage.CLOSED, Stage.CANCELLED})
# Stages whose GTT is active (or may be) with no call of ours in flight on it: a GTT
# listing may settle them. A call in flight is settled by its own answer.
LISTING_SETTLES = frozenset(
    {
        Stage.PROTECTED,
        Stage.PLACE_CHECK,
        Stage.PLACE_CHECK_EXIT,
        Stage.MODIFY_CHECK,
        Stage.DELETE_CHECK,
        Stage.GTT_SELLING,
    }
)
# The only stages the timer can move (an exit order's timeout, a sell's retry, learning a
# fired GTT's order): the engine ticks just these legs. The lifecycle table tests it.
TIMED = frozenset({Stage.SELLING, Stage.SELL_RETRY, Stage.GTT_SELLING})
CHECKING = frozenset(
    {Stage.PLACE_CHECK, Stage.PLACE_CHECK_EXIT, Stage.MODIFY_CHECK, Stage.DELETE_CHECK}
)
GTT_FIRED = frozenset({Stage.GTT_SELLING, Stage.GTT_SELLING_MARKET})
# Stages whose GTT exists at the broker (or may, while its placement is being checked);
# a placement still in flight is settled by its own reply, never by what a listing shows.
HOLDS_GTT = frozenset(
    {
        Stage.PROTECTED,
        Stage.MODIFYING,
        Stage.MODIFY_CHECK,
        Stage.DELETING,
        Stage.DELETE_CHECK,
        Stage.PLACE_CHECK,
        Stage.PLACE_CHECK_EXIT,
    }
)


@dataclass(frozen=True)
class LegWork:
    """One leg's broker-side state: its stage and the ids that stage refers to."""

    symbol: str
    position: int
    trade_id: int
    stage: Stage
    entry_tag: str | None = None
    entry_order_id: str | None = None
    gtt_row_id: int | None = None  # the trades' gtts row of the GTT in play
    gtt_id: int | None = None  # the broker's id of that GTT
    terms: PlaceGtt | ModifyGtt | None = None  # the GTT call in flight or being checked
    exit_reason: ExitReason | None = None
    exit_tag: str | None = None  # our sell's tag (None for the GTT's own order)
    exit_order_id: str | None = None  # our sell, or the fired GTT's order
    exit_since: datetime | None = None  # that order sent, or first seen open
    retry_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.symbol} P{self.position}"

    @property
    def leg_state(self) -> LegState:
        return LEG_STATE[self.stage]

    @property
    def urgent(self) -> bool:
        return self.exit_reason is ExitReason.EMERGENCY


@dataclass(frozen=True)
class Step:
    work: LegWork
    intents: list[Intent] = field(default_factory=list)
    ignored: bool = False  # the event changed nothing, on purpose (late or duplicate)


def ignore(work: LegWork) -> Step:
    return Step(work, [], ignored=True)


def refuse(work: LegWork, event: Event) -> Step:
    """Fail closed: an answer that cannot happen in this stage means our picture is wrong."""
    return Step(
        work,
        [
            FailClosed(
                f"{work.name}: {type(event).__name__} while {work.stage.value}: "
                "the engine's picture of the leg disagrees with the broker; check the leg "
                "at the broker, then press Start"
            )
        ],
    )
