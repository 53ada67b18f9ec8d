"""The events a leg's lifecycle takes and the intents it gives back (leg_lifecycle.py).

Events are what the engine learnt (a broker's answer, an update, a price that lets a GTT
be placed, the timer); intents are what it must do, in order: Record* intents are written
to the app DB, the *Call intents are broker calls, each after the records before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from Webapp.broker.base import Gtt, GttState, Order
from Webapp.states import ExitReason, OrderIntentState
from Webapp.strategy.actions import ModifyGtt, PlaceGtt

# --- events: what the engine learnt --------------------------------------------------------


@dataclass(frozen=True)
class BuyAcked:
    order_id: str
    at: datetime


@dataclass(frozen=True)
class BuyFilled:
    qty: int
    price: float
    at: datetime
    order_id: str | None
    gtt: PlaceGtt | None  # its protection, or None when Kite would refuse it at this price


@dataclass(frozen=True)
class BuyEnded:
    """The buy ended with nothing filled (rejected, cancelled, or never reached the broker)."""

    state: OrderIntentState
    message: str


@dataclass(frozen=True)
class BuyReplyLost:
    message: str


@dataclass(frozen=True)
class Protect:
    """A price at which the unprotected leg's GTT may be placed."""

    gtt: PlaceGtt


@dataclass(frozen=True)
class GttPlaced:
    gtt_id: int
    at: datetime


@dataclass(frozen=True)
class GttRefused:
    message: str
    at: datetime


@dataclass(frozen=True)
class GttReplyLost:
    message: str


@dataclass(frozen=True)
class TrailDue:
    modify: ModifyGtt


@dataclass(frozen=True)
class GttModified:
    at: datetime


@dataclass(frozen=True)
class GttCallFailed:
    """A modify or delete failed (refused, or its reply lost): the GTT's state decides."""

    message: str


@dataclass(frozen=True)
class GttDeleteAnswered:
    """delete_gtt's answer: the state the GTT was in (ACTIVE: deleted by us)."""

    state: GttState
    at: datetime


@dataclass(frozen=True)
class GttSeen:
    """The broker's view of the leg's GTT (None: not there). For a placement being checked,
    the listed GTT with its terms that no other leg claims, or None."""

    gtt: Gtt | None
    at: datetime


@dataclass(frozen=True)
class GttLookupFailed:
    message: str


@dataclass(frozen=True)
class ExitDecided:
    reason: ExitReason


@dataclass(frozen=True)
class SellSent:
    """Our sell was written with `tag` and handed to the broker as a LIMIT or MARKET order."""

    tag: str
    market: bool
    at: datetime


@dataclass(frozen=True)
class SellNotSent:
    """The sell could not be sent now: trading is stopped (sent once trading again, as
    decided: `market` or not), or its write was refused (`refused`: sent again at market
    shortly)."""

    message: str
    at: datetime
    refused: bool = False
    market: bool = False


@dataclass(frozen=True)
class SellRefused:
    """The broker refused our sell outright (nothing was placed)."""

    message: str
    at: datetime


@dataclass(frozen=True)
class SellOrderSeen:
    """News of our sell (its placement reply, an update, a lookup)."""

    order: Order
    at: datetime


@dataclass(frozen=True)
class SellReplyLost:
    message: str


@dataclass(frozen=True)
class SellNotFound:
    """Looked up by its tag after a lost reply, three times: never reached the broker."""

    at: datetime


@dataclass(frozen=True)
class GttOrderSeen:
    """News of the order the fired GTT placed."""

    order: Order
    at: datetime


@dataclass(frozen=True)
class ToMarketAnswered:
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Tick:
    """The timer: exit timeouts and retries are due by `now`."""

    now: datetime
    exit_timeout: timedelta


Event = (
    BuyAcked
    | BuyFilled
    | BuyEnded
    | BuyReplyLost
    | Protect
    | GttPlaced
    | GttRefused
    | GttReplyLost
    | TrailDue
    | GttModified
    | GttCallFailed
    | GttDeleteAnswered
    | GttSeen
    | GttLookupFailed
    | ExitDecided
    | SellSent
    | SellNotSent
    | SellRefused
    | SellOrderSeen
    | SellReplyLost
    | SellNotFound
    | GttOrderSeen
    | ToMarketAnswered
    | Tick
)


# --- intents: what the engine must do, in order ---------------------------------------------
# Record* intents are written to the app DB; the others are broker calls (each after the
# records before it). Errors go to the dashboard; FailClosed stops all new orders.


@dataclass(frozen=True)
class RecordOrderSent:
    tag: str
    order_id: str
    at: datetime


@dataclass(frozen=True)
class RecordEntryFill:
    qty: int
    price: float
    at: datetime
    order_id: str | None


@dataclass(frozen=True)
class RecordEntryCancelled:
    state: OrderIntentState
    message: str


@dataclass(frozen=True)
class PlaceGttCall:
    """Write the GTT intent (PENDING), then place it."""

    gtt: PlaceGtt


@dataclass(frozen=True)
class RecordGttPlaced:
    row_id: int
    gtt_id: int
    triggers: tuple[float, ...]
    at: datetime


@dataclass(frozen=True)
class RecordGttPlaceFailed:
    row_id: int
    message: str


@dataclass(frozen=True)
class ModifyGttCall:
    """Write the modify intent (MODIFYING), then modify."""

    row_id: int
    gtt_id: int
    modify: ModifyGtt


@dataclass(frozen=True)
class RecordGttModified:
    row_id: int
    modify: ModifyGtt
    at: datetime


@dataclass(frozen=True)
class RecordGttModifyFailed:
    row_id: int
    message: str


@dataclass(frozen=True)
class RecordGttVanished:
    row_id: int
    message: str


@dataclass(frozen=True)
class RecordExitIntent:
    reason: ExitReason


@dataclass(frozen=True)
class DeleteGttCall:
    gtt_id: int
    urgent: bool


@dataclass(frozen=True)
class RecordGttDeleted:
    row_id: int
    at: datetime


@dataclass(frozen=True)
class FetchGttCall:
    gtt_id: int


@dataclass(frozen=True)
class ListGttsCall:
    pass


@dataclass(frozen=True)
class RecordGttTriggered:
    row_id: int
    trigger_index: int
    at: datetime


@dataclass(frozen=True)
class RecordGttOrderFailed:
    row_id: int
    message: str
    at: datetime


@dataclass(frozen=True)
class SellCall:
    """Write our sell (PENDING, a new tag), then place it: MARKET when `market`, else LIMIT
    just under the last price (MARKET too when there is none). Answers SellSent/SellNotSent."""

    market: bool
    urgent: bool


@dataclass(frozen=True)
class RecordExitOrderNotFilled:
    tag: str
    state: OrderIntentState
    message: str


@dataclass(frozen=True)
class RecordExitFill:
    price: float
    qty: int
    at: datetime
    tag: str | None
    order_id: str | None
    market: bool = False  # the order that filled was (turned into) a MARKET order


@dataclass(frozen=True)
class FindOrderCall:
    tag: str


@dataclass(frozen=True)
class CancelBuyCall:
    order_id: str


@dataclass(frozen=True)
class ToMarketCall:
    order_id: str
    urgent: bool


@dataclass(frozen=True)
class RecordOrderModified:
    tag: str


@dataclass(frozen=True)
class ShowError:
    message: str


@dataclass(frozen=True)
class FailClosed:
    reason: str


Intent = (
    RecordOrderSent
    | RecordEntryFill
    | RecordEntryCancelled
    | PlaceGttCall
    | RecordGttPlaced
    | RecordGttPlaceFailed
    | ModifyGttCall
    | RecordGttModified
    | RecordGttModifyFailed
    | RecordGttVanished
    | RecordExitIntent
    | DeleteGttCall
    | RecordGttDeleted
    | FetchGttCall
    | ListGttsCall
    | RecordGttTriggered
    | RecordGttOrderFailed
    | SellCall
    | RecordExitOrderNotFilled
    | RecordExitFill
    | FindOrderCall
    | CancelBuyCall
    | ToMarketCall
    | RecordOrderModified
    | ShowError
    | FailClosed
)
