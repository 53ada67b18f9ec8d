"""Exponential moving averages on candle closes, incremental and batch, seeded with an SMA.

The rule (STRATEGY.md): an EMA of period N has no value until N closes have been
seen; its first value is the simple average of those N closes, and each later
close moves it by alpha = 2 / (N + 1): ema += alpha * (close - ema).

Incremental and batch code use the same float operations in the same order, so
they agree bit for bit, not just approximately.

Restoring from storage: once seeded, an EMA depends only on its last value and the
next close, so it continues exactly from a stored value. Before that it depends
on the running sum of the closes seen so far, which a stored None does not hold.
Hence `EmaSet.restore`: from the last stored candle's EMAs when all four are
stored (all periods seeded: at least 200 candles), otherwise by replaying the
symbol's complete history of closes from its very first candle. Stored values
must be 64-bit floats (PostgreSQL double precision, SQLite REAL) for the
continuation to be exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from Webapp.market.candle import EMA_PERIODS, Candle


class EMA:
    """One EMA of `period` updated close by close."""

    __slots__ = ("period", "alpha", "count", "value", "_sum")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"EMA period must be at least 1, got {period}")
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self.count = 0  # closes seen
        self.value: float | None = None
        self._sum = 0.0  # of the first `period` closes, until seeded

    @classmethod
    def from_value(cls, period: int, value: float, count: int | None = None) -> EMA:
        """An EMA that continues from a stored, already seeded `value` after `count` closes."""
        count = period if count is None else count
        if count < period:
            raise ValueError(f"EMA({period}) has a value only after {period} closes, not {count}")
        ema = cls(period)
        ema.value = float(value)
        ema.count = count
        return ema

    def update(self, close: float) -> float | None:
        """Feed the next close; returns the EMA, or None until `period` closes were seen."""
        self.count += 1
        value = self.value
        if value is not None:
            value += self.alpha * (close - value)
            self.value = value
            return value
        self._sum += close
        if self.count == self.period:
            self.value = self._sum / self.period
        return self.value

    def __repr__(self) -> str:
        return f"EMA(period={self.period}, count={self.count}, value={self.value!r})"


def ema_series(closes: Sequence[float], period: int) -> list[float | None]:
    """The EMA after each close: None for the first period − 1, then the seeded EMA."""
    if period < 1:
        raise ValueError(f"EMA period must be at least 1, got {period}")
    alpha = 2.0 / (period + 1)
    if len(closes) < period:
        return [None] * len(closes)
    total = 0.0
    for close in closes[:period]:
        total += close
    value = total / period
    out: list[float | None] = [None] * (period - 1)
    append = out.append
    append(value)
    for close in islice(closes, period, None):
        value += alpha * (close - value)
        append(value)
    return out


class EmaSet:
    """The EMAs of EMA_PERIODS (9, 21, 50, 200) for one (symbol, timeframe)."""

    __slots__ = ("emas",)

    def __init__(self, periods: Sequence[int] = EMA_PERIODS) -> None:
        self.emas = tuple(EMA(period) for period in periods)

    @property
    def periods(self) -> tuple[int, ...]:
        return tuple(ema.period for ema in self.emas)

    @property
    def count(self) -> int:
        """Closes seen (restored from values without a count: the longest period)."""
        return self.emas[0].count if self.emas else 0

    @property
    def values(self) -> tuple[float | None, ...]:
        return tuple(ema.value for ema in self.emas)

    @property
    def seeded(self) -> bool:
        """True once every EMA has a value: from here a stored copy restores exactly."""
        return all(ema.value is not None for ema in self.emas)

    def update(self, close: float) -> tuple[float | None, ...]:
        """Feed the next close to every EMA; returns their values in period order."""
        return tuple(ema.update(close) for ema in self.emas)

    @classmethod
    def from_history(cls, closes: Sequence[float], periods: Sequence[int] = EMA_PERIODS) -> EmaSet:
        """Replay `closes`, which must be the complete series from the first candle on."""
        ema_set = cls(periods)
        for close in closes:
            ema_set.update(close)
        return ema_set

    @classmethod
    def from_values(
        cls,
        values: Sequence[float | None],
        periods: Sequence[int] = EMA_PERIODS,
        count: int | None = None,
    ) -> EmaSet:
        """Continue from stored EMA values, one per period; all must be present.

        `count` is the number of closes behind them when known (default: the longest
        period, the least it can be). Raises ValueError when any value is None: an
        unseeded EMA cannot be restored from it.
        """
        if len(values) != len(periods):
            raise ValueError(f"expected {len(periods)} EMA values, got {len(values)}")
        if any(value is None for value in values):
            raise ValueError(
                "an EMA without a value cannot be restored from it; replay the closes instead"
            )
        seen = max(periods) if count is None else count
        ema_set = cls.__new__(cls)
        ema_set.emas = tuple(
            EMA.from_value(period, value, seen)  # type: ignore[arg-type]
            for period, value in zip(periods, values, strict=True)
        )
        return ema_set

    @classmethod
    def from_candle(cls, candle: Candle) -> EmaSet:
        """Continue from the EMAs stored on the symbol's last closed candle (all four needed)."""
        return cls.from_values((candle.ema_9, candle.ema_21, candle.ema_50, candle.ema_200))

    @classmethod
    def restore(cls, candles: Sequence[Candle]) -> EmaSet:
        """EMAs after `candles` (oldest first), exactly: from the last one's stored EMAs when
        all four are there, else by replaying every close, in which case `candles` must be the
        symbol's complete history in that timeframe."""
        if candles:
            last = candles[-1]
            if None not in (last.ema_9, last.ema_21, last.ema_50, last.ema_200):
                return cls.from_candle(last)
        return cls.from_history([candle.close for candle in candles])

    def __repr__(self) -> str:
        return f"EmaSet(count={self.count}, values={self.values!r})"
