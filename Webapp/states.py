"""The explicit states of legs, ladders, orders and GTTs, and the transitions each allows.

Every state is written to the app DB before the call that changes it (write-ahead),
so after a crash at any line the state says what may be in flight at the broker and
reconciliation knows what to look up (an order by its tag, a GTT by its leg).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

S = TypeVar("S", bound=StrEnum)


class LegState(StrEnum):
    PENDING_ENTRY = "pending_entry"  # intent saved with its tag; the buy may be in flight
    PROTECTING = "protecting"  # bought; its GTT is being placed (the leg is not yet protected)
    OPEN = "open"  # bought and protected by an active GTT
    PENDING_EXIT = "pending_exit"  # exit decided: GTT cancel / sell in flight, or GTT fired
    CLOSED = "closed"  # sold; exit price and P&L known
    CANCELLED = "cancelled"  # the entry never filled (rejected or cancelled): no position


class LadderState(StrEnum):
    OPEN = "open"  # at least one leg not final
    STOPPED_OUT = "stopped_out"  # a leg was stopped out: no more legs, the rest run to exit
    CLOSED = "closed"  # every leg final; the symbol cools down from closed_at


class OrderIntentState(StrEnum):
    """The engine's record of one order it asked for (the broker's own view is base.OrderState)."""

    PENDING = "pending"  # written before the call; a crash here is resolved by the tag
    OPEN = "open"  # acknowledged by the broker
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class GttIntentState(StrEnum):
    PENDING = "pending"  # written before place_gtt; resolved by listing GTTs after a crash
    ACTIVE = "active"
    MODIFYING = "modifying"  # a modify is in flight; the old trigger still protects the leg
    DELETING = "deleting"  # a delete is in flight (the cancel-first exit rule)
    TRIGGERED = "triggered"  # fired at the broker: wait for its sell, never sell again
    DELETED = "deleted"


class ExitReason(StrEnum):
    TARGET = "target"
    STOP_GTT = "stop_gtt"
    STOP_ENGINE = "stop_engine"
    EMERGENCY = "emergency"
    MANUAL = "manual"


class IllegalTransition(Exception):
    """A state change the rules do not allow: a bug, or a broker event for a stale record."""


LEG_TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    LegState.PENDING_ENTRY: frozenset({LegState.PROTECTING, LegState.CANCELLED}),
    LegState.PROTECTING: frozenset({LegState.OPEN, LegState.PENDING_EXIT}),
    LegState.OPEN: frozenset({LegState.PENDING_EXIT}),
    LegState.PENDING_EXIT: frozenset({LegState.CLOSED, LegState.OPEN}),  # OPEN: exit undone
    LegState.CLOSED: frozenset(),
    LegState.CANCELLED: frozenset(),
}

ORDER_TRANSITIONS: dict[OrderIntentState, frozenset[OrderIntentState]] = {
    OrderIntentState.PENDING: frozenset(
        {
            OrderIntentState.OPEN,
            OrderIntentState.FILLED,
            OrderIntentState.CANCELLED,
            OrderIntentState.REJECTED,
        }
    ),
    OrderIntentState.OPEN: frozenset(
        {OrderIntentState.FILLED, OrderIntentState.CANCELLED, OrderIntentState.REJECTED}
    ),
    OrderIntentState.FILLED: frozenset(),
    OrderIntentState.CANCELLED: frozenset(),
    OrderIntentState.REJECTED: frozenset(),
}

LADDER_TRANSITIONS: dict[LadderState, frozenset[LadderState]] = {
    LadderState.OPEN: frozenset({LadderState.STOPPED_OUT, LadderState.CLOSED}),
    LadderState.STOPPED_OUT: frozenset({LadderState.CLOSED}),
    LadderState.CLOSED: frozenset(),
}

GTT_TRANSITIONS: dict[GttIntentState, frozenset[GttIntentState]] = {
    GttIntentState.PENDING: frozenset({GttIntentState.ACTIVE, GttIntentState.DELETED}),
    # ACTIVE/MODIFYING → DELETED: the GTT vanished at the broker (cancelled by hand, expired,
    # disabled) while it protected the leg; the engine places a new one.
    GttIntentState.ACTIVE: frozenset(
        {
            GttIntentState.MODIFYING,
            GttIntentState.DELETING,
            GttIntentState.TRIGGERED,
            GttIntentState.DELETED,
        }
    ),
    GttIntentState.MODIFYING: frozenset(
        {
            GttIntentState.ACTIVE,
            GttIntentState.DELETING,
            GttIntentState.TRIGGERED,
            GttIntentState.DELETED,
        }
    ),
    GttIntentState.DELETING: frozenset(
        {GttIntentState.DELETED, GttIntentState.TRIGGERED, GttIntentState.ACTIVE}
    ),
    # TRIGGERED → DELETED: the order the GTT placed was rejected or cancelled unfilled, so
    # nothing was sold and the engine must sell the leg itself.
    GttIntentState.TRIGGERED: frozenset({GttIntentState.DELETED}),
    GttIntentState.DELETED: frozenset(),
}


def check_transition(table: dict[S, frozenset[S]], current: S, new: S) -> S:
    """Return `new` when the table allows current → new; else raise IllegalTransition."""
    if new not in table[current]:
        raise IllegalTransition(f"{type(current).__name__}: {current.value} → {new.value} refused")
    return new
