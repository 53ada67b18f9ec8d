"""A feed that replays stored candles as ticks along each candle's price path, at N× speed."""

from __future__ import annotations

import heapq
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from Webapp.market.calendar import IST, SESSION_HOURS, MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.feeds.base import Feed, FeedState
from Webapp.market.ltp_store import LTPStore
from Webapp.market.price_path import path_ticks

if TYPE_CHECKING:
    from Webapp.market.csv_import import ImportOptions
    from Webapp.market.ohlcv import OHLCVStore

_log = logging.getLogger(__name__)

# After falling this far behind schedule (a suspended laptop, a slow subscriber) the
# replay resumes at its normal pace instead of bursting out every late tick.
_MAX_CATCH_UP_S = 1.0

# (store, symbols, timeframe, start, end): the candles to replay, read from the OHLCV store.
ReplaySource = tuple["OHLCVStore", Sequence[str], Timeframe, datetime | None, datetime | None]
Waiter = Callable[[threading.Event, float], bool]


@dataclass(frozen=True, slots=True)
class ReplayTick:
    """One replayed trade. `at` is simulated market time (UTC); `volume` is the
    symbol's cumulative volume for its IST session, as Kite reports it."""

    symbol: str
    at: datetime
    price: float
    volume: int


def _calendar_for(candle: Candle) -> MarketCalendar | None:
    """The session calendar, except for an intraday candle outside the session
    (a pre-open bar), which plays over its own length instead of being cut."""
    if candle.timeframe is Timeframe.D1 or SESSION_HOURS.in_session(candle.ts):
        return SESSION_HOURS
    return None


def candle_span(candle: Candle) -> tuple[datetime, datetime]:
    """[start, end) of the market time a candle's ticks are played over, in UTC."""
    calendar = _calendar_for(candle)
    if calendar is None:
        return candle.ts, candle.ts + candle.timeframe.length
    if candle.timeframe is Timeframe.D1:
        return calendar.session_bounds(calendar.session_date(candle.ts))
    return candle.ts, calendar.bar_end(candle.ts, candle.timeframe)


def candle_ticks(
    candle: Candle, volume_before: int = 0, steps_per_leg: int = 1, tick_size: float | None = None
) -> list[ReplayTick]:
    """The candle's price path (STRATEGY.md "Backtest fills") as ticks, via path_ticks.

    Intraday candles play over their bar (cut at the 15:30 IST close), daily
    candles over their 09:15–15:30 IST session. `volume_before` is the
    session's volume before this candle, so the ticks carry Kite's cumulative
    day volume and the last one brings it to `volume_before + candle.volume`.
    """
    ticks = path_ticks(candle, steps_per_leg, calendar=_calendar_for(candle), tick_size=tick_size)
    return [
        ReplayTick(candle.symbol, tick.ts, float(tick.price), volume_before + tick.volume)
        for tick in ticks
    ]


@dataclass(frozen=True, slots=True)
class _Step:
    """A tick in the merged stream, with the market time its candle covers until."""

    at: datetime
    symbol: str
    tick: ReplayTick
    covered_until: datetime


def _symbol_steps(
    symbol: str, candles: list[Candle], steps_per_leg: int, tick_size: float | None
) -> Iterator[_Step]:
    session: date | None = None
    volume = 0
    for candle in candles:
        day = candle.ts.astimezone(IST).date()
        if day != session:  # Kite's volume counter restarts every session
            session, volume = day, 0
        _, covered_until = candle_span(candle)
        for tick in candle_ticks(candle, volume, steps_per_leg, tick_size):
            yield _Step(tick.at, symbol, tick, covered_until)
        volume += candle.volume


def _by_symbol(candles: Iterable[Candle]) -> dict[str, list[Candle]]:
    """Candles grouped per symbol in time order; overlapping candles are refused."""
    grouped: dict[str, list[Candle]] = {}
    for candle in candles:
        if candle.ts.tzinfo is None:
            raise ValueError(f"{candle.symbol} candle at {candle.ts!r} has a naive timestamp")
        grouped.setdefault(candle.symbol, []).append(candle)
    for symbol, series in grouped.items():
        series.sort(key=lambda c: c.ts)
        for before, after in zip(series, series[1:], strict=False):
            if candle_span(before)[1] > candle_span(after)[0]:
                raise ValueError(
                    f"{symbol}: candles at {before.ts.isoformat()} ({before.timeframe}) and "
                    f"{after.ts.isoformat()} ({after.timeframe}) overlap; replay one timeframe"
                )
    return dict(sorted(grouped.items()))


def merged_ticks(
    candles: Iterable[Candle], steps_per_leg: int = 1, tick_size: float | None = None
) -> Iterator[ReplayTick]:
    """Every candle's ticks, all symbols merged in market-time order (ties by symbol)."""
    for step in _merged_steps(_by_symbol(candles), steps_per_leg, tick_size):
        yield step.tick


def _merged_steps(
    grouped: dict[str, list[Candle]], steps_per_leg: int = 1, tick_size: float | None = None
) -> Iterator[_Step]:
    streams = [
        _symbol_steps(symbol, series, steps_per_leg, tick_size)
        for symbol, series in grouped.items()
    ]
    return heapq.merge(*streams, key=lambda step: (step.at, step.symbol))


def _default_wait(stop_event: threading.Event, seconds: float) -> bool:
    return stop_event.wait(seconds)


class ReplayFeed(Feed):
    """Plays candles back as ticks into an LTPStore, `speed` market seconds per second.

    Give the candles directly (`candles=`) or as a query on the OHLCV store
    (`source=(store, symbols, timeframe, start, end)`); `from_csv` reads files
    with the importer's parser. Each candle becomes ticks along its price path
    (open → high → low → close, or open → low → high → close for a falling
    candle): the four path prices, plus `steps_per_leg - 1` prices interpolated
    on each leg (rounded to `tick_size`). Each tick is stamped with the
    simulated market time as `exchange_time`; its volume is the symbol's
    cumulative volume for the IST session, so candle aggregation downstream
    recovers each candle's volume.

    Pacing: `speed=60` plays one market minute per second; `speed=0` or None
    plays as fast as the store takes it. Market time covered by no candle
    (nights, weekends, holidays) is skipped, so a replay never idles overnight.

    `market_time` is the replay's clock; `wait_done(timeout)` blocks until the
    thread ends and says whether every tick was delivered; `on_done()` is
    called on the feed thread when the replay reaches its end. After the end
    the feed is STOPPED with a detail saying so; start() plays it again.
    """

    name = "replay"

    def __init__(
        self,
        store: LTPStore,
        *,
        candles: Sequence[Candle] | None = None,
        source: ReplaySource | None = None,
        speed: float | None = 60.0,
        steps_per_leg: int = 1,
        tick_size: float | None = 0.05,
        stale_after_s: float = 10.0,
        on_done: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Waiter = _default_wait,
    ) -> None:
        super().__init__(stale_after_s=stale_after_s)
        if (candles is None) == (source is None):
            raise ValueError("give the replay either candles or a source, not both or neither")
        if speed is not None and not (speed >= 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be zero (as fast as possible) or positive, got {speed!r}")
        if steps_per_leg < 1:
            raise ValueError(f"steps_per_leg must be at least 1, got {steps_per_leg!r}")
        if source is not None:
            candles = _load_source(source)
        self.store = store
        self.speed = float(speed) if speed else None
        self.steps_per_leg = steps_per_leg
        self.tick_size = tick_size
        self.on_done = on_done
        self._clock = clock
        self._wait = wait
        self._grouped = _by_symbol(candles or ())
        self._candle_count = sum(len(series) for series in self._grouped.values())

        self._stop_event = threading.Event()
        self._done = threading.Event()
        self._finished = False
        self._thread: threading.Thread | None = None
        self._steps: Iterator[_Step] | None = None
        # The replay clock: market time of the last tick and the wall time it went out.
        self._clock_lock = threading.Lock()
        self._last_at: datetime | None = None
        self._last_wall = 0.0
        self._next_at: datetime | None = None

    @classmethod
    def from_csv(
        cls,
        store: LTPStore,
        paths: Sequence[str | Path],
        options: ImportOptions | None = None,
        **kwargs: Any,
    ) -> ReplayFeed:
        """A replay of CSV files read and validated by the importer (CsvImportError if bad).

        The files go through a throwaway SQLite OHLCV store, so the replay sees
        exactly what an import would store; nothing is written anywhere else.
        """
        from Webapp.market.csv_import import import_csv
        from Webapp.market.ohlcv import OHLCVStore

        candles: list[Candle] = []
        with tempfile.TemporaryDirectory(prefix="ladder-replay-") as folder:
            scratch = OHLCVStore(f"sqlite:///{Path(folder) / 'replay.db'}")
            try:
                scratch.migrate()
                for path in paths:
                    report = import_csv(scratch, path, options)
                    candles.extend(scratch.candles(report.symbol, report.timeframe))
            finally:
                scratch.dispose()
        return cls(store, candles=candles, **kwargs)

    # --- what it plays ------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        return list(self._grouped)

    @property
    def candle_count(self) -> int:
        return self._candle_count

    @property
    def first_tick_at(self) -> datetime | None:
        """Market time of the replay's first tick (None without candles): where a replay's
        engine clock starts, whatever range was asked for."""
        first = next(self._steps_from_start(), None)
        return None if first is None else first.at

    def ticks(self) -> Iterator[ReplayTick]:
        """Every tick the replay delivers, in order, without touching the store or clock."""
        for step in self._steps_from_start():
            yield step.tick

    def _steps_from_start(self) -> Iterator[_Step]:
        return _merged_steps(self._grouped, self.steps_per_leg, self.tick_size)

    # --- the clock --------------------------------------------------------------------------

    @property
    def market_time(self) -> datetime | None:
        """The simulated market time: None before the first tick.

        While the replay waits for its next tick, it advances with the wall clock
        at `speed` (never past that tick); otherwise it is the last tick's time.
        """
        with self._clock_lock:
            last_at, last_wall, next_at = self._last_at, self._last_wall, self._next_at
        if last_at is None or self.speed is None or next_at is None:
            return last_at
        if self._thread is None or not self._thread.is_alive():
            return last_at
        elapsed = max(0.0, self._clock() - last_wall) * self.speed
        return min(last_at + timedelta(seconds=elapsed), max(next_at, last_at))

    @property
    def last_tick_at(self) -> datetime | None:
        """Market time of the last tick delivered (None before the first): a replay's
        engine clock, which moves only with ticks, as a backtest's does."""
        with self._clock_lock:
            return self._last_at

    def now(self) -> datetime | None:
        """`market_time`, callable like a clock."""
        return self.market_time

    # --- running --------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once every tick has been delivered (until the next start)."""
        return self._finished

    def wait_done(self, timeout: float | None = None) -> bool:
        """Wait for the feed thread to end; True when it ended by reaching the last tick."""
        self._done.wait(timeout)
        return self._finished

    def next_tick(self) -> ReplayTick | None:
        """Deliver the next tick now, ignoring pacing; None after the last one.

        For tests and manual stepping; RuntimeError while the feed's thread runs.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("next_tick() while the replay thread runs would skip ticks")
        if self._steps is None:
            self._steps = self._steps_from_start()
        step = next(self._steps, None)
        if step is None:
            with self._clock_lock:
                self._next_at = None
            return None
        self._deliver(step.tick)
        return step.tick

    def start(self) -> None:
        """Play from the first candle in the "replay-feed" thread; RuntimeError if running."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.name} feed is already running")
        self._stop_event = threading.Event()
        self._done = threading.Event()
        self._finished = False
        self._steps = None
        with self._clock_lock:
            self._last_at = self._next_at = None
        self._mark_starting()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop_event, self._done), name="replay-feed", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (it wakes at once from its pacing wait) and join it."""
        self._stop_event.set()
        thread = self._thread
        if thread is None:
            if self.status().state is not FeedState.ERROR:
                self._mark_stopped(self._end_detail())
            return
        if not self._join_thread(thread, timeout):
            return
        self._thread = None

    def _end_detail(self) -> str:
        if self._finished:
            return f"replay finished: {self._candle_count} candles, {self._ticks_total} ticks"
        return ""

    def _deliver(self, tick: ReplayTick) -> None:
        wall = self._clock()
        received = datetime.now(UTC)
        self.store.update(
            tick.symbol, tick.price, tick.volume, exchange_time=tick.at, received_at=received
        )
        with self._clock_lock:
            self._last_at, self._last_wall = tick.at, wall
        self._record_tick(received)

    def _run(self, stop_event: threading.Event, done: threading.Event) -> None:
        self._mark_running()
        speed = self.speed
        finished = False
        try:
            steps = self._steps_from_start()
            first = next(steps, None)
            if first is None:
                finished = True
                return
            start_at = first.at
            covered_until = first.at
            skipped_s = 0.0  # market seconds covered by no candle, not waited for
            wall_start = self._clock()
            step: _Step | None = first
            while step is not None:
                if stop_event.is_set():
                    return
                if step.at > covered_until:
                    skipped_s += (step.at - covered_until).total_seconds()
                covered_until = max(covered_until, step.covered_until)
                with self._clock_lock:
                    self._next_at = step.at
                if speed is not None:
                    active_s = (step.at - start_at).total_seconds() - skipped_s
                    due = wall_start + active_s / speed
                    delay = due - self._clock()
                    if delay > 0:
                        if self._wait(stop_event, delay):
                            return
                    elif delay < -_MAX_CATCH_UP_S:
                        wall_start -= delay  # rebase: keep the pace, drop the backlog
                self._deliver(step.tick)
                step = next(steps, None)
            finished = True
        except Exception as exc:
            _log.exception("%s feed stopped on an error", self.name)
            self._mark_error(f"{type(exc).__name__}: {exc}")
        finally:
            with self._clock_lock:
                self._next_at = None
            self._finished = finished
            if self.status().state is not FeedState.ERROR:
                self._mark_stopped(self._end_detail())
            if finished and self.on_done is not None:
                try:
                    self.on_done()
                except Exception:
                    _log.exception("%s on_done callback failed", self.name)
            done.set()  # after on_done: a waiter may rely on what it did


def _load_source(source: ReplaySource) -> list[Candle]:
    store, symbols, timeframe, start, end = source
    if not symbols:
        raise ValueError("the replay source names no symbols")
    candles: list[Candle] = []
    for symbol in symbols:
        series = store.candles(symbol, Timeframe(timeframe), start=start, end=end)
        if not series:
            _log.warning("replay: no %s candles for %s in the chosen range", timeframe, symbol)
        candles.extend(series)
    if not candles:
        raise ValueError(f"no {timeframe} candles stored for {', '.join(symbols)} in that range")
    return candles
