"""EMA on closes seeded with the SMA of the first N: incremental, batch, restored from storage."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from Webapp.market.candle import EMA_PERIODS, Candle, Timeframe
from Webapp.market.indicators import EMA, EmaSet, ema_series


def random_walk(n: int, seed: int = 7, start: float = 1000.0) -> list[float]:
    rng = random.Random(seed)
    closes, price = [], start
    for _ in range(n):
        price = max(1.0, round(price * (1 + rng.gauss(0, 0.004)) / 0.05) * 0.05)
        closes.append(price)
    return closes


def test_ema_has_no_value_until_period_closes_then_the_sma():
    ema = EMA(3)

    assert [ema.update(c) for c in (10.0, 11.0)] == [None, None]
    assert ema.value is None
    assert ema.update(12.0) == 11.0
    assert ema.count == 3


def test_ema_moves_by_alpha_two_over_n_plus_one_after_the_seed():
    ema = EMA(3)  # alpha = 0.5
    for close in (10.0, 11.0, 12.0):
        ema.update(close)

    assert ema.alpha == 0.5
    assert ema.update(15.0) == 13.0
    assert ema.update(13.0) == 13.0


def test_period_one_follows_the_close():
    assert ema_series([5.0, 6.0, 7.5], 1) == [5.0, 6.0, 7.5]


@pytest.mark.parametrize("period", [0, -3])
def test_a_period_below_one_is_refused(period):
    with pytest.raises(ValueError):
        EMA(period)
    with pytest.raises(ValueError):
        ema_series([1.0], period)


def test_series_shorter_than_the_period_is_all_none():
    assert ema_series([1.0, 2.0], 3) == [None, None]
    assert ema_series([], 9) == []


@pytest.mark.parametrize("period", EMA_PERIODS)
def test_incremental_equals_batch_exactly(period):
    closes = random_walk(600)
    ema = EMA(period)

    incremental = [ema.update(close) for close in closes]

    assert incremental == ema_series(closes, period)  # bit for bit, not approx
    assert incremental[period - 2] is None and incremental[period - 1] is not None
    assert incremental[period - 1] == pytest.approx(sum(closes[:period]) / period)


def test_ema_set_keeps_the_four_periods_in_order():
    closes = random_walk(250, seed=3)
    ema_set = EmaSet()

    values = [ema_set.update(close) for close in closes]

    assert ema_set.periods == EMA_PERIODS
    assert ema_set.count == 250
    for index, period in enumerate(EMA_PERIODS):
        assert [v[index] for v in values] == ema_series(closes, period)
    assert not EmaSet.from_history(closes[:199]).seeded
    assert EmaSet.from_history(closes[:200]).seeded


def test_from_history_equals_feeding_the_same_closes():
    closes = random_walk(300, seed=11)
    fed = EmaSet()
    for close in closes:
        fed.update(close)

    assert EmaSet.from_history(closes).values == fed.values


def test_restoring_from_stored_values_continues_exactly_once_all_are_seeded():
    closes = random_walk(400, seed=5)
    stored = EmaSet.from_history(closes[:250]).values
    assert None not in stored

    restored = EmaSet.from_values(stored, count=250)
    continued = [restored.update(close) for close in closes[250:]]
    straight = EmaSet.from_history(closes[:250])
    expected = [straight.update(close) for close in closes[250:]]

    assert continued == expected
    assert restored.count == 400


def test_restoring_from_values_with_a_missing_ema_is_refused():
    # With fewer than 200 closes EMA200 is None: its running sum is not in storage.
    stored = EmaSet.from_history(random_walk(120)).values
    assert stored[-1] is None

    with pytest.raises(ValueError, match="replay the closes"):
        EmaSet.from_values(stored)


def _candles(closes: list[float]) -> list[Candle]:
    ema_set, candles = EmaSet(), []
    for index, close in enumerate(closes):
        values = ema_set.update(close)
        ts = datetime.fromtimestamp(1_780_000_000 + 900 * index, UTC)
        candles.append(Candle("TCS", Timeframe.M15, ts, close, close, close, close, 0, *values))
    return candles


@pytest.mark.parametrize("stored_count", [0, 5, 150, 199, 200, 260])
def test_restore_from_candles_is_exact_whether_or_not_the_last_one_is_seeded(stored_count):
    closes = random_walk(320, seed=9)
    stored = _candles(closes[:stored_count])

    restored = EmaSet.restore(stored)
    reference = EmaSet.from_history(closes[:stored_count])

    assert [restored.update(c) for c in closes[stored_count:]] == [
        reference.update(c) for c in closes[stored_count:]
    ]


def test_restore_uses_the_stored_values_of_a_fully_seeded_last_candle():
    candles = _candles(random_walk(210))
    # Only the last candle matters once it holds all four EMAs: earlier history may be absent.
    restored = EmaSet.restore(candles[-1:])

    assert restored.values == (
        candles[-1].ema_9,
        candles[-1].ema_21,
        candles[-1].ema_50,
        candles[-1].ema_200,
    )
