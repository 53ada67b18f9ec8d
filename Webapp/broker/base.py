"""The broker interface: typed orders, GTTs, positions and one error family for every broker.

KiteBroker (live) and PaperBroker (paper and backtest) implement `Broker`. Callers
never see a raw Kite dict: every method returns the dataclasses below, and every
failure is one of the `BrokerError` subclasses, so the engine decides on types,
not on message text.
"""

from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

EXCHANGE_NSE = "NSE"
PRODUCT_CNC = "CNC"
TICK_SIZE = 0.05  # NIFTY 50 stocks; prices sent to the broker sit on this tick
MAX_TAG_LENGTH = 20  # Kite's limit on an order's `tag`
_TAG = re.compile(r"^[A-Za-z0-9]{1,20}$")


# --- errors ------------------------------------------------------------------------


class BrokerError(Exception):
    """Any failure talking to a broker. The message is for a person; never holds a secret."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code  # HTTP status when there was one


class InputRejected(BrokerError):
    """Refused as invalid before any order existed (bad price, quantity, GTT rule)."""


class OrderRejected(BrokerError):
    """The broker or exchange rejected the order (margin, circuit, RMS)."""


class TokenExpired(BrokerError):
    """The access token is no longer valid: trading pauses until the user logs in to Kite again."""


class RateLimited(BrokerError):
    """Too many requests (HTTP 429): slow down and try again later."""


class NetworkUnavailable(BrokerError):
    """The broker could not be reached or did not answer.

    `maybe_applied` is True when the request may have reached the broker before the
    failure (a read timeout, a 502/503/504 after sending): an order placement with
    this error must be looked up by its tag before anything is sent again.
    """

    def __init__(self, message: str, *, code: int | None = None, maybe_applied: bool) -> None:
        super().__init__(message, code=code)
        self.maybe_applied = maybe_applied


class CircuitOpen(BrokerError):
    """Calls are refused unsent after repeated failures, until a probe succeeds."""


# --- orders ------------------------------------------------------------------------


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class OrderState(StrEnum):
    """Where an order stands at the broker; the last three are final."""

    PENDING = "pending"  # received, not yet open on the exchange (Kite's *PENDING / REQ RECEIVED)
    OPEN = "open"  # resting on the exchange; `filled_quantity` may already be > 0
    FILLED = "filled"  # Kite's COMPLETE
    CANCELLED = "cancelled"  # by us or by the exchange; a partial fill keeps its filled part
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in (OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED)


@dataclass(frozen=True)
class OrderRequest:
    """A CNC equity order as the engine asks for it; `tag` is the client id to find it by."""

    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    tag: str
    price: float | None = None  # LIMIT only
    exchange: str = EXCHANGE_NSE
    product: str = PRODUCT_CNC

    def __post_init__(self) -> None:
        check_tag(self.tag)
        if self.quantity <= 0:
            raise InputRejected(f"{self.symbol}: quantity must be > 0, got {self.quantity}")
        if self.order_type is OrderType.LIMIT and (self.price is None or self.price <= 0):
            raise InputRejected(f"{self.symbol}: a LIMIT order needs a price > 0")
        if self.order_type is OrderType.MARKET and self.price is not None:
            raise InputRejected(f"{self.symbol}: a MARKET order takes no price")


@dataclass(frozen=True)
class Order:
    """One order as the broker reports it now (or at one step of its history)."""

    order_id: str
    tag: str | None
    symbol: str
    side: Side
    order_type: OrderType
    quantity: int
    state: OrderState
    filled_quantity: int = 0
    average_price: float = 0.0  # of the filled part
    price: float | None = None  # limit price
    exchange: str = EXCHANGE_NSE
    product: str = PRODUCT_CNC
    status_message: str | None = None  # the broker's reason on a rejection or cancel
    updated_at: datetime | None = None  # aware UTC

    @property
    def pending_quantity(self) -> int:
        return 0 if self.state.is_final else self.quantity - self.filled_quantity


# --- GTTs --------------------------------------------------------------------------


class GttType(StrEnum):
    SINGLE = "single"
    TWO_LEG = "two-leg"  # OCO: [stop, target]


class GttState(StrEnum):
    ACTIVE = "active"
    TRIGGERED = "triggered"
    DISABLED = "disabled"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    DELETED = "deleted"


@dataclass(frozen=True)
class GttRequest:
    """A GTT guarding a CNC holding: SELL `quantity` at `limit_prices[i]` past `triggers[i]`.

    SINGLE has one trigger (the stop); TWO_LEG has [stop, target] in that order.
    `last_price` is the LTP the broker checks the triggers against.
    """

    symbol: str
    gtt_type: GttType
    triggers: tuple[float, ...]
    limit_prices: tuple[float, ...]
    last_price: float
    quantity: int
    side: Side = Side.SELL
    exchange: str = EXCHANGE_NSE
    product: str = PRODUCT_CNC

    def __post_init__(self) -> None:
        expected = 1 if self.gtt_type is GttType.SINGLE else 2
        if len(self.triggers) != expected or len(self.limit_prices) != expected:
            raise InputRejected(
                f"{self.symbol}: a {self.gtt_type.value} GTT needs {expected} trigger(s) and "
                f"limit price(s), got {len(self.triggers)} and {len(self.limit_prices)}"
            )
        if self.quantity <= 0:
            raise InputRejected(f"{self.symbol}: GTT quantity must be > 0, got {self.quantity}")


@dataclass(frozen=True)
class GttOrderResult:
    """The order a triggered GTT placed; `leg` says which trigger fired (0 stop, 1 target)."""

    leg: int
    order_id: str | None
    status: str | None = None
    rejection_reason: str | None = None


@dataclass(frozen=True)
class Gtt:
    gtt_id: int
    symbol: str
    gtt_type: GttType
    state: GttState
    triggers: tuple[float, ...]
    limit_prices: tuple[float, ...]
    last_price: float
    quantity: int
    side: Side = Side.SELL
    exchange: str = EXCHANGE_NSE
    created_at: datetime | None = None
    updated_at: datetime | None = None
    results: tuple[GttOrderResult, ...] = ()


# --- account -----------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """A net position of the day (Kite's `net` positions)."""

    symbol: str
    quantity: int
    average_price: float
    last_price: float
    pnl: float
    exchange: str = EXCHANGE_NSE
    product: str = PRODUCT_CNC


@dataclass(frozen=True)
class Holding:
    """Delivery holdings of earlier days; `quantity` includes T1 shares not yet settled.

    `used_quantity` of them were sold today (Kite shows that sale as a negative CNC
    position too); `exchange` is only where the broker lists the scrip.
    """

    symbol: str
    quantity: int
    average_price: float
    last_price: float
    exchange: str = EXCHANGE_NSE
    used_quantity: int = 0


def shares_held(holdings: Iterable[Holding], positions: Iterable[Position]) -> dict[str, int]:
    """The shares held in each symbol (symbols with none are left out).

    STRATEGY.md: holdings quantity − `used_quantity` (sold from holdings today) + today's
    CNC position on NSE; other products (MIS, NRML, MTF) and exchanges do not count. A
    sale out of holdings shows both in `used_quantity` and as a negative CNC position:
    it is taken off once, so a negative position adds nothing (the part of a sale the
    day's own buys covered is in the position, not in `used_quantity`).
    """
    held: dict[str, int] = {}
    for h in holdings:
        held[h.symbol] = held.get(h.symbol, 0) + h.quantity - h.used_quantity
    for p in positions:
        if p.product == PRODUCT_CNC and p.exchange == EXCHANGE_NSE and p.quantity > 0:
            held[p.symbol] = held.get(p.symbol, 0) + p.quantity
    return {symbol: quantity for symbol, quantity in held.items() if quantity}


@dataclass(frozen=True)
class Margins:
    """Equity segment cash: what may still be spent, and what is in use."""

    available_cash: float
    utilised: float
    net: float


@dataclass(frozen=True)
class OrderUpdate:
    """An order's new state pushed by the broker (ticker, postback, poll, or a paper fill)."""

    order: Order
    source: str  # "ticker" | "postback" | "poll" | "paper"
    received_at: datetime | None = None


OrderUpdateHandler = Callable[[OrderUpdate], None]


# --- the interface -----------------------------------------------------------------


class Broker(ABC):
    """One trading account; thread-safe, called from the engine's order-gateway thread."""

    name: str = "broker"

    def __init__(self) -> None:
        self._order_handlers: list[OrderUpdateHandler] = []

    # orders
    @abstractmethod
    def place_order(self, request: OrderRequest) -> Order:
        """Send an order; returns it as accepted (PENDING/OPEN, or FILLED on a paper fill)."""

    @abstractmethod
    def modify_order(
        self,
        order_id: str,
        *,
        quantity: int | None = None,
        price: float | None = None,
        order_type: OrderType | None = None,
    ) -> None:
        """Change a resting order; turning it MARKET applies the broker's market protection."""

    @abstractmethod
    def cancel_order(self, order_id: str) -> None: ...

    @abstractmethod
    def orders(self) -> list[Order]:
        """Today's orders, newest state of each."""

    @abstractmethod
    def order_history(self, order_id: str) -> list[Order]:
        """Every state the order went through, oldest first."""

    def find_order_by_tag(self, tag: str) -> Order | None:
        """The order carrying this client id, if the broker has one (after a lost reply)."""
        matches = [order for order in self.orders() if order.tag == tag]
        return matches[-1] if matches else None

    # account
    @abstractmethod
    def positions(self) -> list[Position]: ...

    @abstractmethod
    def holdings(self) -> list[Holding]: ...

    @abstractmethod
    def margins(self) -> Margins: ...

    # GTTs
    @abstractmethod
    def place_gtt(self, request: GttRequest) -> int:
        """Place a GTT; returns its id."""

    @abstractmethod
    def modify_gtt(self, gtt_id: int, request: GttRequest) -> None: ...

    @abstractmethod
    def delete_gtt(self, gtt_id: int) -> GttState:
        """Delete a GTT; returns the state it was in when the delete was decided.

        ACTIVE means it was still active and is now gone (the leg may be sold);
        TRIGGERED means it had already fired: wait for its order, never sell twice.
        """

    @abstractmethod
    def gtts(self) -> list[Gtt]: ...

    @abstractmethod
    def get_gtt(self, gtt_id: int) -> Gtt: ...

    def status(self) -> BrokerStatus:
        """Circuit, token and last error, for the UI; brokers with more to say override it."""
        return BrokerStatus(self.name)

    # order updates
    def on_order_update(self, handler: OrderUpdateHandler) -> None:
        """Call `handler` for every order update (from any thread; it must only hand off)."""
        self._order_handlers.append(handler)

    def _emit_order_update(self, update: OrderUpdate) -> None:
        for handler in list(self._order_handlers):
            handler(update)


# --- helpers -----------------------------------------------------------------------


def check_tag(tag: str) -> str:
    """Kite accepts an alphanumeric tag of at most 20 characters."""
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise InputRejected(f"order tag must be 1-{MAX_TAG_LENGTH} letters or digits, got {tag!r}")
    return tag


def new_tag(prefix: str = "L") -> str:
    """A fresh client id: `prefix` + random hex, at most 20 characters."""
    check_tag(prefix)
    body = secrets.token_hex(8)
    return (prefix + body)[:MAX_TAG_LENGTH]


def round_down_to_tick(price: float, tick: float = TICK_SIZE) -> float:
    """Stops and sell limits round down to the tick (never a looser stop than asked)."""
    ticks = int(round(price / tick, 6) // 1)
    return round(ticks * tick, 2)


def round_up_to_tick(price: float, tick: float = TICK_SIZE) -> float:
    """Targets round up to the tick."""
    scaled = round(price / tick, 6)
    ticks = int(scaled) if scaled == int(scaled) else int(scaled) + 1
    return round(ticks * tick, 2)


@dataclass
class BrokerStatus:
    """What the UI shows about the broker connection."""

    name: str
    circuit: str = "closed"  # closed | open | half_open
    token_valid: bool = True
    last_error: str | None = None
    detail: dict = field(default_factory=dict)
