"""The scan's market inputs: each symbol's last closed signal candle with EMAs, previous close.

The engine asks `SignalCandles.inputs` on every scan and turns the answer and the
LTPStore's quotes into `SymbolSnapshot`s with `snapshots`. Reads are cached: a scan
costs no query while the last closed candle it expects is the one already read, and
the previous session's close is read once per symbol and day. Closed candles pushed
live by the CandleRecorder (`on_candles`) fill the cache without a query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from Webapp.event_bus import EventBus
from Webapp.market.calendar import IST, SESSION_CLOSE, MarketCalendar
from Webapp.market.candle import Candle, CandleColumns, Timeframe
from Webapp.market.candle_recorder import CANDLES_TOPIC
from Webapp.market.ltp_store import Quote
from Webapp.market.ohlcv import OHLCVStore
from Webapp.market.rollup import RolledCandles
from Webapp.strategy.signals import (
    SymbolSnapshot,
    last_closed_candle_end,
    previous_trading_day,
)

# The recorder stores a candle a few seconds after it closes: a read made in that gap
# misses it, so a missed candle is looked for again, at most every _RECHECK, until
# _LATE_WRITE after it was due. Later than that it is missing, and the scan says so.
_RECHECK = timedelta(seconds=15)
_LATE_WRITE = timedelta(minutes=3)


@dataclass(frozen=True)
class CandleInputs:
    """One symbol's candle facts for the scan; None where the store has nothing."""

    candle_close: float | None = None
    ema_9: float | None = None
    ema_21: float | None = None
    ema_50: float | None = None
    ema_200: float | None = None
    candle_closed_at: datetime | None = None
    prev_close: float | None = None


@dataclass(frozen=True)
class _Read:
    """The last closed candle known for one symbol, and which close it answered for."""

    due: datetime  # the close the read was for: last_closed_end(now) at the time
    read_at: datetime
    candle: Candle | None
    closed_at: datetime | None

    @property
    def complete(self) -> bool:
        return self.closed_at is not None and self.closed_at >= self.due


class SignalCandles:
    """Last closed `timeframe` candles and previous closes from the OHLCV store, cached.

    A symbol with no `timeframe` candles stored gets its finest stored candles rolled up
    (market.rollup.RolledCandles): a replay of imported 5m data has 15m signal candles.

    Thread-safe: the engine thread calls `inputs`, the recorder's thread `on_candles`,
    web threads `previous_closes` (the roll-ups are only ever read by `inputs`).
    Without a store only `fallback_prev_close` is known (the simulated feed keeps no
    history): every symbol then lacks candles and the scan says so.
    """

    def __init__(
        self,
        ohlcv: OHLCVStore | None,
        calendar: MarketCalendar,
        timeframe: Timeframe,
        fallback_prev_close: Mapping[str, float] | None = None,
    ) -> None:
        self._ohlcv = ohlcv
        self._calendar = calendar
        self._timeframe = Timeframe(timeframe)
        self._fallback = dict(fallback_prev_close or {})
        self._lock = threading.Lock()
        self._reads: dict[str, _Read] = {}
        # Signal candles of symbols stored only in finer timeframes (imported 5m data).
        self._rolled = None
        if ohlcv is not None and self._timeframe is not Timeframe.D1:
            self._rolled = RolledCandles(ohlcv, self._timeframe)
        # symbol -> (session date, close or None, the candle due when it was looked for)
        self._prev: dict[str, tuple[date, float | None, datetime]] = {}

    def inputs(self, symbols: Sequence[str], now: datetime) -> dict[str, CandleInputs]:
        """Each symbol's last `timeframe` candle closed at or before `now`, and the close of
        the session before `now`'s (IST date's) session."""
        due = last_closed_end(now, self._timeframe, self._calendar)
        session = self._calendar.session_date(now)
        with self._lock:
            reads = {s: self._reads.get(s) for s in symbols}
            prevs = {s: self._prev.get(s) for s in symbols}
        stale = [s for s in symbols if not _current(reads[s], due, now)]
        unknown = [s for s in symbols if not _prev_known(prevs[s], session, due)]
        if self._ohlcv is not None and (stale or unknown):
            self._read(stale, unknown, due, now, session)
            with self._lock:
                reads = {s: self._reads.get(s) for s in symbols}
                prevs = {s: self._prev.get(s) for s in symbols}
        return {s: self._combine(s, reads[s], prevs[s], session, now) for s in symbols}

    def previous_closes(self, symbols: Sequence[str], now: datetime) -> dict[str, float]:
        """The previous session close of each of `symbols` at `now`, as `inputs` gives it
        (the fallback where none is stored), for the day change on screen; symbols without
        one are left out. Shares the cache: a page asks the store no more often than a scan.
        """
        due = last_closed_end(now, self._timeframe, self._calendar)
        session = self._calendar.session_date(now)
        with self._lock:
            prevs = {s: self._prev.get(s) for s in symbols}
        unknown = [s for s in symbols if not _prev_known(prevs[s], session, due)]
        if self._ohlcv is not None and unknown:
            self._read([], unknown, due, now, session)
            with self._lock:
                prevs = {s: self._prev.get(s) for s in symbols}
        closes = {s: self._prev_close(s, prevs[s], session) for s in symbols}
        return {s: close for s, close in closes.items() if close is not None}

    def on_candles(self, candles: Iterable[Candle]) -> None:
        """Closed candles from the recorder: those of the signal timeframe become the
        symbol's last closed candle (EMAs and all, None ones too) without a query.

        Ignored without a store: the simulated feed's made-up candles are not history.
        """
        if self._ohlcv is None:
            return
        for candle in candles:
            if candle.timeframe is not self._timeframe:
                continue
            closed_at = self._closed_at(candle)
            self._keep(candle.symbol, _Read(closed_at, closed_at, candle, closed_at))

    def subscribe(self, bus: EventBus) -> Callable[[], None]:
        """Hear the recorder's closed candles (CANDLES_TOPIC); returns the unsubscribe."""
        return bus.subscribe(CANDLES_TOPIC, lambda _topic, batch: self.on_candles(batch))

    # --- reading ----------------------------------------------------------------------------

    def _read(
        self,
        stale: list[str],
        unknown: list[str],
        due: datetime,
        now: datetime,
        session: date,
    ) -> None:
        """One connection for every query this scan needs."""
        assert self._ohlcv is not None
        store, tf = self._ohlcv, self._timeframe
        with store.engine.connect() as conn:
            raw = conn.connection.driver_connection
            for symbol in stale:
                last = _only(store.read_before(raw, symbol, tf, due, 1))
                if last is None and self._rolled is not None:
                    last = self._rolled.last_closed(raw, symbol, due)
                closed_at = None if last is None else self._closed_at(last)
                self._keep(symbol, _Read(due, now, last, closed_at))
            if unknown:
                closes = store.previous_closes(unknown, session, raw)
                with self._lock:
                    for symbol in unknown:
                        self._prev[symbol] = (session, closes.get(symbol), due)

    def _keep(self, symbol: str, read: _Read) -> None:
        """Cache `read` unless the cached one is better for the same close."""
        with self._lock:
            old = self._reads.get(symbol)
            if old is None or _replaces(read, old):
                self._reads[symbol] = read

    def _combine(
        self,
        symbol: str,
        read: _Read | None,
        prev: tuple[date, float | None, datetime] | None,
        session: date,
        now: datetime,
    ) -> CandleInputs:
        prev_close = self._prev_close(symbol, prev, session)
        candle = read.candle if read is not None else None
        # Never a candle still forming at `now` (one pushed live by a clock ahead of ours).
        if candle is None or read.closed_at is None or read.closed_at > now:
            return CandleInputs(prev_close=prev_close)
        return CandleInputs(
            candle_close=candle.close,
            ema_9=candle.ema_9,
            ema_21=candle.ema_21,
            ema_50=candle.ema_50,
            ema_200=candle.ema_200,
            candle_closed_at=read.closed_at,
            prev_close=prev_close,
        )

    def _prev_close(
        self, symbol: str, prev: tuple[date, float | None, datetime] | None, session: date
    ) -> float | None:
        close = prev[1] if prev is not None and prev[0] == session else None
        return self._fallback.get(symbol) if close is None else close

    def _closed_at(self, candle: Candle) -> datetime:
        try:
            return self._calendar.bar_end(candle.ts, candle.timeframe)
        except ValueError:  # a special session on a day the calendar lists as closed
            if candle.timeframe is Timeframe.D1:
                day = self._calendar.session_date(candle.ts)
                return datetime.combine(day, SESSION_CLOSE, IST).astimezone(UTC)
            return candle.ts + candle.timeframe.length


def last_closed_end(now: datetime, timeframe: Timeframe, calendar: MarketCalendar) -> datetime:
    """When the last `timeframe` candle closed by `now`, at any time (in a session or not)."""
    today = calendar.session_date(now)
    if calendar.is_trading_day(today):
        open_, close = calendar.session_bounds(today)
        if now >= close:
            return close
        if now >= open_:
            return last_closed_candle_end(now, timeframe, calendar)
    return calendar.session_bounds(previous_trading_day(today, calendar))[1]


def snapshots(
    symbols: Sequence[str],
    quotes: Mapping[str, Quote],
    inputs: Mapping[str, CandleInputs],
    *,
    open_symbols: Collection[str],
    last_closed: Mapping[str, datetime],
    use_exchange_time: bool,
) -> list[SymbolSnapshot]:
    """One SymbolSnapshot per symbol, in `symbols` order, for `signals.scan`.

    The tick time is the exchange's when `use_exchange_time` and the quote has one,
    else when the quote was received.
    """
    out: list[SymbolSnapshot] = []
    for symbol in symbols:
        quote = quotes.get(symbol)
        facts = inputs.get(symbol) or CandleInputs()
        tick_at = None
        if quote is not None:
            tick_at = quote.received_at
            if use_exchange_time and quote.exchange_time is not None:
                tick_at = quote.exchange_time
        out.append(
            SymbolSnapshot(
                symbol=symbol,
                ltp=quote.ltp if quote is not None else None,
                last_tick_at=tick_at,
                prev_close=facts.prev_close,
                candle_close=facts.candle_close,
                ema_9=facts.ema_9,
                ema_21=facts.ema_21,
                ema_50=facts.ema_50,
                ema_200=facts.ema_200,
                candle_closed_at=facts.candle_closed_at,
                ladder_open=symbol in open_symbols,
                last_closed_at=last_closed.get(symbol),
            )
        )
    return out


def _current(read: _Read | None, due: datetime, now: datetime) -> bool:
    """True when the cached read answers for `due` and need not be asked again."""
    if read is None or read.due != due:
        return False
    if read.complete:
        return True
    return not (now - due < _LATE_WRITE and now - read.read_at >= _RECHECK)


def _prev_known(
    prev: tuple[date, float | None, datetime] | None, session: date, due: datetime
) -> bool:
    """A close found today is kept all day; one not found is looked for once per candle."""
    if prev is None or prev[0] != session:
        return False
    return prev[1] is not None or prev[2] == due


def _replaces(new: _Read, old: _Read) -> bool:
    """A read for another close wins (the latest asked is the one wanted); for the same
    close, unless it found an older candle than the cached one (a query racing a push)."""
    if new.due != old.due or old.closed_at is None:
        return True
    return new.closed_at is not None and new.closed_at >= old.closed_at


def _only(columns: CandleColumns) -> Candle | None:
    """The single candle of a read_before(..., 1) answer, or None."""
    if not columns.ts:
        return None
    return Candle(columns.symbol, columns.timeframe, *(column[0] for column in columns.values()))
