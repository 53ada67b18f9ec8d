"""Ticks into candles; closed candles go to the OHLCV store on their own thread."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from Webapp.event_bus import EventBus
from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.candles import DEFAULT_TIMEFRAMES, CandleAgg
from Webapp.market.indicators import EmaSet
from Webapp.market.ltp_store import LTPStore
from Webapp.market.ohlcv import OHLCVStore

log = logging.getLogger(__name__)

CANDLES_TOPIC = "candles"


def preload_ema_seeds(
    ohlcv: OHLCVStore, symbols: Iterable[str], timeframes: Iterable[Timeframe]
) -> dict[tuple[str, Timeframe], EmaSet]:
    """EMAs after each symbol's last stored candle, read once at start (never on a tick).

    The last candle's stored EMAs continue exactly when all four are seeded;
    otherwise the whole (short) history is replayed, as EmaSet.restore requires.
    """
    seeds: dict[tuple[str, Timeframe], EmaSet] = {}
    for symbol in symbols:
        for timeframe in timeframes:
            last = ohlcv.last_candles(symbol, timeframe, 1)
            if not last:
                continue
            if None in (last[0].ema_9, last[0].ema_21, last[0].ema_50, last[0].ema_200):
                last = ohlcv.candles(symbol, timeframe)
            seeds[(symbol, timeframe)] = EmaSet.restore(last)
    return seeds


class CandleRecorder:
    """CandleAgg on the store's ticks, a timer that closes candles on time, and a writer.

    The aggregator's sink only queues (it runs on the feed thread with the
    aggregator's lock held); this recorder's own thread closes due candles every
    second and writes what closed to the OHLCV store, if one is given. Without a
    store (the simulated and replay feeds) candles are built and published but
    never stored: made-up prices must not mix with real history.
    """

    # A tick can reach us a little after its minute ended; wait this long before closing.
    GRACE = timedelta(seconds=2)
    INTERVAL_S = 1.0

    def __init__(
        self,
        ltp_store: LTPStore,
        calendar: MarketCalendar,
        ohlcv: OHLCVStore | None = None,
        bus: EventBus | None = None,
        symbols: Sequence[str] = (),
        timeframes: Iterable[Timeframe] = DEFAULT_TIMEFRAMES,
    ) -> None:
        self._ltp_store = ltp_store
        self._ohlcv = ohlcv
        self._bus = bus
        self._closed: queue.SimpleQueue[list[Candle]] = queue.SimpleQueue()
        self._unwritten: list[Candle] = []
        self.timeframes = tuple(timeframes)
        self._seeds = preload_ema_seeds(ohlcv, symbols, self.timeframes) if ohlcv else {}
        self.agg = CandleAgg(self._closed.put, calendar, self.timeframes, ema_seed=self._seed_for)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = None
        self.candles_written = 0
        self.last_error = ""

    @property
    def stores_candles(self) -> bool:
        return self._ohlcv is not None

    def _seed_for(self, symbol: str, timeframe: Timeframe) -> EmaSet | None:
        return self._seeds.get((symbol, timeframe))

    def start(self) -> None:
        self._unsubscribe = self._ltp_store.subscribe(self.agg.on_quote)
        self._thread = threading.Thread(target=self._run, name="candles", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        # Forming candles are dropped, not flushed: a half-built candle stored as
        # complete would be wrong history.
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.write_pending()

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self.tick(datetime.now(UTC))

    def tick(self, now: datetime) -> int:
        """Close what is due at `now` (minus the grace) and write it; returns candles written."""
        self.agg.close_due(now - self.GRACE)
        return self.write_pending()

    def write_pending(self) -> int:
        """Write every closed candle not yet stored; on a DB error keep them for the next try."""
        while True:
            try:
                self._unwritten.extend(self._closed.get_nowait())
            except queue.Empty:
                break
        if not self._unwritten:
            return 0
        batch = self._unwritten
        if self._ohlcv is not None:
            try:
                self._ohlcv.upsert(batch)
            except Exception as exc:  # shown on /healthz; the feed and the engine go on
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("writing %d candles failed; will retry", len(batch))
                return 0
            self.last_error = ""
        self._unwritten = []
        self.candles_written += len(batch)
        if self._bus is not None:
            self._bus.publish(CANDLES_TOPIC, batch)
        return len(batch)
