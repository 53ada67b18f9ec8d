"""The candle record and the timeframes the app keeps, shared by aggregation, storage and import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Timeframe(StrEnum):
    """Candle lengths. Values are what the OHLCV table, CLI and param.yaml use."""

    M1 = "1m"
    M3 = "3m"
    M5 = "5m"
    M10 = "10m"
    M15 = "15m"
    M30 = "30m"
    H1 = "60m"
    D1 = "1d"

    @property
    def minutes(self) -> int | None:
        """Length in minutes for intraday timeframes; None for daily candles."""
        return None if self is Timeframe.D1 else int(self.value[:-1])

    @property
    def length(self) -> timedelta:
        return timedelta(days=1) if self is Timeframe.D1 else timedelta(minutes=self.minutes)


# Indicator columns kept with every candle, on closes, seeded with the SMA of the first N.
EMA_PERIODS = (9, 21, 50, 200)


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV candle. `ts` is the candle's start, tz-aware UTC.

    Daily candles start at the session's date 00:00 IST (stored in UTC), so a
    day's candle keeps its IST date whatever the reader's time zone.
    EMAs are None until a symbol has enough closed candles of that timeframe.
    """

    symbol: str
    timeframe: Timeframe
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    ema_9: float | None = None
    ema_21: float | None = None
    ema_50: float | None = None
    ema_200: float | None = None


@dataclass(slots=True)
class CandleColumns:
    """Candles of one series as parallel lists, oldest first: what imports write and read
    in bulk without building a Candle per row. `ts` are aware UTC datetimes."""

    symbol: str
    timeframe: Timeframe
    ts: list[datetime]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[int]
    ema_9: list[float | None]
    ema_21: list[float | None]
    ema_50: list[float | None]
    ema_200: list[float | None]

    def __len__(self) -> int:
        return len(self.ts)

    def values(self) -> tuple[list, ...]:
        """The ten columns after symbol and timeframe, in table order (ts first)."""
        return (
            self.ts, self.open, self.high, self.low, self.close, self.volume,
            self.ema_9, self.ema_21, self.ema_50, self.ema_200,
        )  # fmt: skip
