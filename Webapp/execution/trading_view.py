"""What the engine publishes: its state, every ladder and leg, signals, orders and errors.

The engine thread builds one immutable `TradingView` after each event that changed
something (and at most a few times a second), keeps the latest for readers on other
threads (`Engine.view()`), and publishes it on the bus topic TRADING_TOPIC. Times are
aware UTC; pages show them in IST.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

TRADING_TOPIC = "trading"


class TradingState(StrEnum):
    STOPPED = "stopped"  # no new orders; GTTs at the broker protect the open legs
    RECONCILING = "reconciling"  # comparing the app DB with the broker before trading
    RUNNING = "running"
    PAUSED = "paused"  # running, but no new ladders or legs
    EMERGENCY = "emergency"  # emergency stop in progress: GTTs cancelled, legs sold at market
    FAILED = "failed"  # fail closed: something could not be explained; `detail` says what


@dataclass(frozen=True)
class LegView:
    symbol: str
    position: int  # 1-3
    state: str  # LegState
    qty: int
    entry: float | None  # fill price (the decision price while the buy is in flight)
    ltp: float | None
    pnl: float | None  # unrealised while held, realised once closed; gross, rupees
    pnl_pct: float | None
    stop: float | None  # the engine's trailing stop (unrounded)
    gtt_trigger: float | None  # the stop trigger held at the broker
    target: float | None  # P1's target trigger; None for runners
    age_s: float | None  # seconds since the fill
    exit_reason: str | None = None


@dataclass(frozen=True)
class LadderView:
    symbol: str
    state: str  # LadderState
    opened_at: datetime | None
    legs: tuple[LegView, ...]
    pnl: float  # sum of the legs' P&L


@dataclass(frozen=True)
class SignalView:
    """The last scan's verdict on one universe symbol."""

    symbol: str
    state: str  # "open" (ladder open) | "entered" (bought this scan) | "skipped"
    reason: str  # SkipReason value, or "" when entered / open
    detail: str
    at: datetime | None
    day_change_pct: float | None = None


@dataclass(frozen=True)
class OrderView:
    tag: str | None
    symbol: str
    side: str
    order_type: str
    qty: int
    price: float | None
    state: str  # OrderIntentState
    purpose: str  # entry | exit | emergency | gtt
    at: datetime
    message: str | None = None


@dataclass(frozen=True)
class ErrorView:
    at: datetime
    message: str


@dataclass(frozen=True)
class DayPnl:
    realised: float  # gross, legs closed today (IST)
    charges: float
    unrealised: float  # gross, held legs at LTP
    net: float  # realised + unrealised - charges
    loss_limit_hit: bool


@dataclass(frozen=True)
class TradingView:
    state: TradingState
    detail: str  # why it is in that state (the reason it stopped, what failed)
    entries_paused: bool
    broker: str  # "paper" | "kite" | ...
    params_version: int | None
    day: DayPnl
    ladders: tuple[LadderView, ...] = ()
    signals: tuple[SignalView, ...] = ()
    orders: tuple[OrderView, ...] = ()  # most recent first
    errors: tuple[ErrorView, ...] = ()  # most recent first
    updated_at: datetime | None = None
    # What the last start-up reconciliation did, leg by leg (sold while away, GTT replaced…)
    reconciled: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (datetimes as ISO 8601 UTC strings)."""
        return _jsonable(asdict(self))


def empty_view(broker: str = "", detail: str = "not started") -> TradingView:
    return TradingView(
        state=TradingState.STOPPED,
        detail=detail,
        entries_paused=False,
        broker=broker,
        params_version=None,
        day=DayPnl(0.0, 0.0, 0.0, 0.0, False),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value
