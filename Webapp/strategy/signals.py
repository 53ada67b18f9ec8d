"""The momentum entry signal and the scan that ranks candidates and opens P1 legs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from Webapp.config.params import Params
from Webapp.market.calendar import IST, MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.strategy.actions import Buy, Skip, SkipReason
from Webapp.strategy.limits import Book, entries_blocked, leg_quantity, leg_refused

_PCT_EPS = 1e-9


@dataclass(frozen=True)
class SymbolSnapshot:
    """What the scan needs to know about one universe symbol at the scan's time.

    The candle fields are the last closed `signal_timeframe` candle (its close, EMAs
    and close time); an EMA is None while the symbol lacks the history for it.
    `ladder_open` and `last_closed_at` (its last ladder's close) come from the engine.
    """

    symbol: str
    ltp: float | None
    last_tick_at: datetime | None
    prev_close: float | None
    candle_close: float | None
    ema_9: float | None
    ema_21: float | None
    ema_50: float | None
    ema_200: float | None
    candle_closed_at: datetime | None
    ladder_open: bool = False
    last_closed_at: datetime | None = None

    @property
    def day_change_pct(self) -> float | None:
        """(LTP / previous session close − 1) × 100; None without both prices."""
        if self.ltp is None or not self.prev_close:
            return None
        return (self.ltp / self.prev_close - 1) * 100


def in_entry_window(now: datetime, params: Params, calendar: MarketCalendar) -> SkipReason | None:
    """None when new ladders may open at `now` (a trading day, start ≤ IST time < end)."""
    if not calendar.is_trading_day(calendar.session_date(now)):
        return SkipReason.NOT_TRADING_DAY
    wall = now.astimezone(IST).time()
    if not params.entry_window.start <= wall < params.entry_window.end:
        return SkipReason.OUTSIDE_WINDOW
    return None


def last_closed_candle_end(
    now: datetime, timeframe: Timeframe, calendar: MarketCalendar
) -> datetime:
    """When the last `timeframe` candle closed by `now` (which must be inside a session)."""
    today = calendar.session_date(now)
    open_, _ = calendar.session_bounds(today)
    if timeframe is not Timeframe.D1:
        start = calendar.bar_start(now, timeframe)
        if start > open_:
            return start
    return calendar.session_bounds(previous_trading_day(today, calendar))[1]


def previous_trading_day(d: date, calendar: MarketCalendar) -> date:
    """The last trading day strictly before `d`."""
    for _ in range(366):
        d -= timedelta(days=1)
        if calendar.is_trading_day(d):
            return d
    raise ValueError(f"no trading day within a year before {d.isoformat()}")


def signal_refused(
    snap: SymbolSnapshot, now: datetime, params: Params, candle_due: datetime | None
) -> tuple[SkipReason, str] | None:
    """Why `snap` does not qualify for a new ladder (STRATEGY.md "Entry"), else None.

    `candle_due` is when the last closed signal candle closed: an older candle means
    the candle data is behind and the trend cannot be judged on it.
    """
    if snap.ladder_open:
        return SkipReason.ALREADY_OPEN, "a ladder is open in this symbol"
    if snap.last_closed_at is not None:
        until = snap.last_closed_at + timedelta(minutes=params.cooldown_minutes)
        if now < until:
            return SkipReason.COOLDOWN, f"until {until.astimezone(IST):%H:%M} IST"
    if snap.ltp is None or snap.last_tick_at is None:
        return SkipReason.STALE, "no price yet"
    age_s = (now - snap.last_tick_at).total_seconds()
    if age_s >= params.stale_after_s:
        return SkipReason.STALE, f"last tick {age_s:.0f}s ago"
    emas = (snap.ema_9, snap.ema_21, snap.ema_50, snap.ema_200)
    if snap.candle_close is None or snap.candle_closed_at is None or None in emas:
        return SkipReason.NO_HISTORY, f"too few {params.signal_timeframe} candles for the EMAs"
    if not snap.prev_close:
        return SkipReason.NO_HISTORY, "no previous session close"
    if snap.candle_closed_at > now:
        return SkipReason.STALE_CANDLE, "the candle given has not closed yet"
    if candle_due is not None and snap.candle_closed_at < candle_due:
        return (
            SkipReason.STALE_CANDLE,
            f"last candle closed {snap.candle_closed_at.astimezone(IST):%d %b %H:%M} IST",
        )
    trend = _trend_broken(snap)
    if trend is not None:
        return SkipReason.TREND, trend
    change = snap.day_change_pct
    assert change is not None  # ltp and prev_close were checked above
    # A hair of tolerance: 1050 / 1000 − 1 is 5.000000000000004%, which is 5%.
    if change < params.min_day_change_pct - _PCT_EPS:
        return SkipReason.DAY_CHANGE_LOW, f"{change:.2f}% < {params.min_day_change_pct:g}%"
    if change > params.max_day_change_pct + _PCT_EPS:
        return SkipReason.DAY_CHANGE_HIGH, f"{change:.2f}% > {params.max_day_change_pct:g}%"
    return None


def _trend_broken(snap: SymbolSnapshot) -> str | None:
    """The first link of close > EMA9 > EMA21 > EMA50 (and close > EMA200) that fails."""
    chain = [
        ("close", snap.candle_close),
        ("EMA9", snap.ema_9),
        ("EMA21", snap.ema_21),
        ("EMA50", snap.ema_50),
    ]
    for (upper_name, upper), (lower_name, lower) in zip(chain, chain[1:], strict=False):
        if not upper > lower:  # type: ignore[operator]
            return f"{upper_name} {upper:g} <= {lower_name} {lower:g}"
    if not snap.candle_close > snap.ema_200:  # type: ignore[operator]
        return f"close {snap.candle_close:g} <= EMA200 {snap.ema_200:g}"
    return None


def scan(
    candidates: list[SymbolSnapshot],
    now: datetime,
    params: Params,
    book: Book,
    calendar: MarketCalendar,
) -> tuple[list[Buy], list[Skip]]:
    """One scan: P1 buys for the best qualifying symbols, and a Skip for every other one.

    Qualifying symbols are ranked by day change, highest first (ties by symbol), and
    opened while `max_new_ladders_per_scan` and the account limits allow. Skips come
    in candidate order for the signal checks, then in rank order for the rest.
    """
    closed = in_entry_window(now, params, calendar)
    if closed is not None:
        return [], [Skip(s.symbol, closed) for s in candidates]
    blocked = entries_blocked(book, params)
    if blocked is not None:
        return [], [Skip(s.symbol, blocked[0], detail=blocked[1]) for s in candidates]

    candle_due = last_closed_candle_end(now, Timeframe(params.signal_timeframe), calendar)
    skips: list[Skip] = []
    qualified: list[SymbolSnapshot] = []
    for snap in candidates:
        refused = signal_refused(snap, now, params, candle_due)
        if refused is None:
            qualified.append(snap)
        else:
            skips.append(Skip(snap.symbol, refused[0], detail=refused[1]))

    qualified.sort(key=lambda s: (-(s.day_change_pct or 0.0), s.symbol))
    entries: list[Buy] = []
    for snap in qualified:
        ltp = snap.ltp
        assert ltp is not None  # signal_refused checked it
        if len(entries) >= params.max_new_ladders_per_scan:
            skips.append(
                Skip(snap.symbol, SkipReason.SCAN_CAP, detail=f"{len(entries)} opened this scan")
            )
            continue
        qty = leg_quantity(ltp, params)
        refused = leg_refused(book, params, qty, ltp)
        if refused is not None:
            skips.append(Skip(snap.symbol, refused[0], detail=refused[1]))
            continue
        entries.append(Buy(snap.symbol, 1, qty, ltp))
        book = book.with_leg(qty, ltp)
    return entries, skips
