"""The entry signal and the scan (STRATEGY.md "Entry"), one case per condition, as tables."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.strategy_scenarios import DEFAULTS, T0, params
from Webapp.config.params import Params
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.strategy.actions import Buy, Skip, SkipReason
from Webapp.strategy.limits import Book
from Webapp.strategy.signals import SymbolSnapshot, last_closed_candle_end, scan

CALENDAR = MarketCalendar.nse()


def ist(day: int, hh: int, mm: int, month: int = 1, ss: int = 0) -> datetime:
    return datetime(2025, month, day, hh, mm, ss, tzinfo=IST).astimezone(UTC)


def snap(symbol: str, now: datetime = T0, **changes: object) -> SymbolSnapshot:
    """A symbol that qualifies at `now`: trend up, day change +2%, fresh tick, candle closed."""
    base = SymbolSnapshot(
        symbol=symbol,
        ltp=1020.0,
        last_tick_at=now - timedelta(seconds=1),
        prev_close=1000.0,
        candle_close=1015.0,
        ema_9=1010.0,
        ema_21=1005.0,
        ema_50=1000.0,
        ema_200=990.0,
        candle_closed_at=last_closed_candle_end(now, Timeframe.M15, CALENDAR),
    )
    return replace(base, **changes)


def gaining(symbol: str, day_change_pct: float, now: datetime = T0) -> SymbolSnapshot:
    """A qualifying symbol whose LTP is `day_change_pct` over a 1000 close."""
    return snap(symbol, now, ltp=1000.0 * (1 + day_change_pct / 100))


@dataclass
class ScanCase:
    name: str
    snaps: list[SymbolSnapshot]
    entries: list[str]  # symbols bought, in order
    skips: dict[str, SkipReason] = field(default_factory=dict)
    now: datetime = T0
    book: Book = field(default_factory=Book)
    params: Params = DEFAULTS


def alone(name: str, reason: SkipReason | None, **changes: object) -> ScanCase:
    """One symbol with one condition changed: bought when reason is None, else skipped."""
    entries = ["A"] if reason is None else []
    skips = {} if reason is None else {"A": reason}
    return ScanCase(name, [snap("A", **changes)], entries, skips)


CASES = [
    alone("every condition holds: P1 is bought", None),
    # --- 1. Trend on the last closed candle: close > EMA9 > EMA21 > EMA50, close > EMA200 ---
    alone("trend: close not above EMA9", SkipReason.TREND, candle_close=1010.0),
    alone("trend: EMA9 not above EMA21", SkipReason.TREND, ema_9=1004.0),
    alone("trend: EMA21 not above EMA50", SkipReason.TREND, ema_21=1000.0),
    alone("trend: EMA50 not below the chain", SkipReason.TREND, ema_50=1006.0),
    alone("trend: close not above EMA200", SkipReason.TREND, ema_200=1016.0),
    alone("trend: EMA200 above EMA50 is fine while close is above it", None, ema_200=1012.0),
    alone("history: no EMA200 yet (under 200 candles)", SkipReason.NO_HISTORY, ema_200=None),
    alone("history: no EMA9 yet", SkipReason.NO_HISTORY, ema_9=None),
    alone("history: no closed candle at all", SkipReason.NO_HISTORY, candle_close=None),
    alone("history: no previous session close", SkipReason.NO_HISTORY, prev_close=None),
    alone(
        "trend on the last closed candle: an older candle is not judged",
        SkipReason.STALE_CANDLE,
        candle_closed_at=T0 - timedelta(minutes=15),
    ),
    alone(
        "trend on the last closed candle: a candle still forming is not judged",
        SkipReason.STALE_CANDLE,
        candle_closed_at=T0 + timedelta(minutes=15),
    ),
    # --- 2. Momentum: day change in [1.0, 5.0] ---
    alone("day change 0.99% is under min_day_change_pct", SkipReason.DAY_CHANGE_LOW, ltp=1009.9),
    alone("day change exactly 1.0% qualifies", None, ltp=1010.0),
    alone("day change exactly 5.0% qualifies", None, ltp=1050.0),
    alone("day change 5.01% is over max_day_change_pct", SkipReason.DAY_CHANGE_HIGH, ltp=1050.1),
    alone("day change negative", SkipReason.DAY_CHANGE_LOW, ltp=990.0),
    # --- 3. Fresh price: last tick younger than stale_after_s (10 s) ---
    alone(
        "stale: a tick 10 s old is not younger than stale_after_s",
        SkipReason.STALE,
        last_tick_at=T0 - timedelta(seconds=10),
    ),
    alone("fresh: a tick 9.9 s old", None, last_tick_at=T0 - timedelta(seconds=9.9)),
    alone("stale: no tick yet", SkipReason.STALE, ltp=None, last_tick_at=None),
    # --- no open ladder, not in cooldown ---
    alone("a symbol with an open ladder", SkipReason.ALREADY_OPEN, ladder_open=True),
    alone(
        "cooldown: 59 minutes after its last ladder closed",
        SkipReason.COOLDOWN,
        last_closed_at=T0 - timedelta(minutes=59),
    ),
    alone(
        "cooldown over: 60 minutes after its last ladder closed",
        None,
        last_closed_at=T0 - timedelta(minutes=60),
    ),
    # --- entry window 09:30-15:00 IST on trading days ---
    ScanCase(
        "window: 09:29 IST is before the entry window",
        [snap("A", ist(7, 9, 29))],
        [],
        {"A": SkipReason.OUTSIDE_WINDOW},
        now=ist(7, 9, 29),
    ),
    ScanCase("window: 09:30 IST opens it", [snap("A", ist(7, 9, 30))], ["A"], now=ist(7, 9, 30)),
    ScanCase(
        "window: 14:59:59 IST is still inside",
        [snap("A", ist(7, 14, 59, ss=59))],
        ["A"],
        now=ist(7, 14, 59, ss=59),
    ),
    ScanCase(
        "window: no new ladder at 15:00 IST",
        [snap("A", ist(7, 15, 0))],
        [],
        {"A": SkipReason.OUTSIDE_WINDOW},
        now=ist(7, 15, 0),
    ),
    ScanCase(
        "trading days: none on an NSE holiday (Mahashivratri 2025-02-26)",
        [snap("A", ist(25, 10, 0, month=2))],
        [],
        {"A": SkipReason.NOT_TRADING_DAY},
        now=ist(26, 10, 0, month=2),
    ),
    ScanCase(
        "trading days: none on a Saturday",
        [snap("A", ist(10, 10, 0))],
        [],
        {"A": SkipReason.NOT_TRADING_DAY},
        now=ist(11, 10, 0),
    ),
    # --- ranking and max_new_ladders_per_scan ---
    ScanCase(
        "ranking: highest day change first",
        [gaining("LOW", 1.5), gaining("HIGH", 4.0), gaining("MID", 3.0)],
        ["HIGH", "MID", "LOW"],
    ),
    ScanCase(
        "max_new_ladders_per_scan: the 4th best waits for the next scan",
        [gaining("D", 1.5), gaining("A", 4.5), gaining("B", 4.0), gaining("C", 3.0)],
        ["A", "B", "C"],
        {"D": SkipReason.SCAN_CAP},
    ),
    ScanCase(
        "max_new_ladders_per_scan counts entries only, not symbols refused by the signal",
        [gaining("A", 4.5), gaining("X", 6.0), gaining("B", 2.0)],
        ["A", "B"],
        {"X": SkipReason.DAY_CHANGE_HIGH},
        params=params(max_new_ladders_per_scan=2),
    ),
    # --- Limits and safety apply to P1 too ---
    ScanCase(
        "max_positions: only the best symbol gets the last free leg",
        [gaining("A", 2.0), gaining("B", 3.0)],
        ["B"],
        {"A": SkipReason.MAX_POSITIONS},
        book=Book(open_legs=89),
    ),
    ScanCase(
        "total_capital: a P1 that would take open legs past 240,000 is refused",
        [gaining("A", 2.0), gaining("B", 3.0)],  # B: 2 x 1030 = 2060, A: 2 x 1020 = 2040
        ["B"],
        {"A": SkipReason.TOTAL_CAPITAL},
        book=Book(capital_in_use=240_000.0 - 4000.0),
    ),
    ScanCase(
        "max_order_value: a P1 above it is refused",
        [gaining("A", 2.0)],
        [],
        {"A": SkipReason.MAX_ORDER_VALUE},
        params=params(max_order_value=2000.0),
    ),
    ScanCase(
        "quantity 0: a share dearer than capital_per_position is skipped",
        [snap("A", ltp=3060.0, prev_close=3000.0), gaining("B", 2.0)],
        ["B"],
        {"A": SkipReason.QTY_ZERO},
    ),
    ScanCase(
        "max_daily_loss: below -5,000 no new ladder, every symbol says why",
        [gaining("A", 2.0), snap("B", ladder_open=True)],
        [],
        {"A": SkipReason.DAILY_LOSS, "B": SkipReason.DAILY_LOSS},
        book=Book(day_pnl=-5000.5),
    ),
    ScanCase(
        "pause entries: no new ladder",
        [gaining("A", 2.0)],
        [],
        {"A": SkipReason.PAUSED},
        book=Book(entries_paused=True),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_scan(case: ScanCase) -> None:
    entries, skips = scan(case.snaps, case.now, case.params, case.book, CALENDAR)
    assert [e.symbol for e in entries] == case.entries
    assert {s.symbol: s.reason for s in skips} == case.skips
    assert len(skips) == len(case.skips), "one Skip per symbol not entered"


def test_scan_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


def test_p1_quantity_is_floor_of_capital_per_position_over_ltp() -> None:
    entries, _ = scan([snap("A", ltp=1020.0)], T0, DEFAULTS, Book(), CALENDAR)
    assert entries == [Buy("A", 1, 2, 1020.0)]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"candle_close": 1010.0}, "close 1010 <= EMA9 1010"),
        ({"ema_9": 1004.0}, "EMA9 1004 <= EMA21 1005"),
        ({"ema_21": 1000.0}, "EMA21 1000 <= EMA50 1000"),
        ({"ema_200": 1016.0}, "close 1015 <= EMA200 1016"),
    ],
)
def test_a_trend_skip_names_the_broken_link(changes: dict, says: str) -> None:
    _, skips = scan([snap("A", **changes)], T0, DEFAULTS, Book(), CALENDAR)
    assert skips == [Skip("A", SkipReason.TREND)]
    assert skips[0].detail == says


def test_the_last_closed_candle_of_the_morning_is_yesterdays_until_09_30() -> None:
    assert last_closed_candle_end(ist(7, 9, 20), Timeframe.M15, CALENDAR) == ist(6, 15, 30)
    assert last_closed_candle_end(ist(7, 9, 30), Timeframe.M15, CALENDAR) == ist(7, 9, 30)
    assert last_closed_candle_end(ist(7, 10, 7), Timeframe.M5, CALENDAR) == ist(7, 10, 5)
    # A daily signal reads the previous session's candle; Monday's is Friday's.
    assert last_closed_candle_end(ist(6, 11, 0), Timeframe.D1, CALENDAR) == ist(3, 15, 30)
