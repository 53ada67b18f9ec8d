"""The decisions the ladder rules return and the engine carries out: buy, protect, trail, exit."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from Webapp.broker.base import GttRequest, GttType
from Webapp.states import ExitReason


@dataclass(frozen=True)
class Buy:
    """Buy `qty` of leg `leg` at market; `price` is the LTP the decision was made on."""

    symbol: str
    leg: int
    qty: int
    price: float


@dataclass(frozen=True)
class _GttTerms:
    """What a leg's GTT holds: broker triggers and LIMIT sell prices, for placing or modifying."""

    symbol: str
    leg: int
    qty: int
    stop: float
    target: float | None
    limit_prices: tuple[float, ...]
    last_price: float

    @property
    def triggers(self) -> tuple[float, ...]:
        return (self.stop,) if self.target is None else (self.stop, self.target)

    def gtt_request(self) -> GttRequest:
        return GttRequest(
            symbol=self.symbol,
            gtt_type=GttType.SINGLE if self.target is None else GttType.TWO_LEG,
            triggers=self.triggers,
            limit_prices=self.limit_prices,
            last_price=self.last_price,
            quantity=self.qty,
        )


@dataclass(frozen=True)
class PlaceGtt(_GttTerms):
    """Place a filled leg's GTT: OCO [stop, target] for P1, single at the stop for runners.

    `stop` and `target` are the broker triggers (stop rounded down, target up, to the
    tick); `limit_prices` are the LIMIT sell prices in the same order (rounded down).
    """


@dataclass(frozen=True)
class ModifyGtt(_GttTerms):
    """Move a leg's GTT stop trigger up to the trailed stop (target, if any, unchanged)."""


@dataclass(frozen=True)
class RaiseStop:
    """A new highest LTP for an open leg and the engine's (unrounded) stop that follows it."""

    symbol: str
    leg: int
    high: float
    stop: float


@dataclass(frozen=True)
class Exit:
    """Sell the leg: the engine first cancels its GTT (the cancel-first rule), then sells."""

    symbol: str
    leg: int
    price: float  # the LTP the decision was made on
    reason: ExitReason = ExitReason.STOP_ENGINE


class SkipReason(StrEnum):
    """Why a symbol did not open a ladder, or a ladder did not add a leg (shown in the UI)."""

    NOT_TRADING_DAY = "not a trading day"
    OUTSIDE_WINDOW = "outside the entry window"
    ALREADY_OPEN = "ladder already open"
    COOLDOWN = "cooling down"
    STALE = "no fresh price"
    NO_HISTORY = "not enough history"
    STALE_CANDLE = "last closed candle missing"
    TREND = "trend not up"
    DAY_CHANGE_LOW = "day change too small"
    DAY_CHANGE_HIGH = "day change too large"
    SCAN_CAP = "per-scan limit reached"
    PAUSED = "entries paused"
    DAILY_LOSS = "daily loss limit reached"
    QTY_ZERO = "price above capital per position"
    MAX_POSITIONS = "max positions reached"
    TOTAL_CAPITAL = "total capital in use"
    MAX_ORDER_VALUE = "order value above max"


@dataclass(frozen=True)
class Skip:
    """No entry for `symbol` (leg 1 from a scan, 2 or 3 from a price) and why.

    `detail` is for the UI (the numbers behind the reason) and is left out of equality,
    so that tests compare decisions, not wording.
    """

    symbol: str
    reason: SkipReason
    leg: int = 1
    detail: str = field(default="", compare=False)


Action = Buy | PlaceGtt | ModifyGtt | RaiseStop | Exit | Skip
