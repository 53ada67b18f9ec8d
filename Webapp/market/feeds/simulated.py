"""A seeded random-walk price feed for paper trading, demos and tests without a broker."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from Webapp.market.feeds.base import Feed, FeedState
from Webapp.market.ltp_store import LTPStore
from Webapp.market.universe import UniverseMember

_log = logging.getLogger(__name__)

# After falling this far behind schedule (a suspended laptop, a long GC) the feed
# resumes at its normal rate instead of bursting out every missed tick.
_MAX_CATCH_UP_S = 1.0


class SimulatedFeed(Feed):
    """Gaussian random walk per symbol, starting at each member's ref_price.

    Symbols tick in round-robin order; each tick moves one symbol's price by a
    normal step with standard deviation `volatility_pct` percent of its price,
    rounded to `tick_size` and never below one tick. The walk depends only on
    `seed`: `next_tick()` yields the same (symbol, price) sequence for the same
    seed however fast or slow it is called.

    `ticks_per_second` is the total rate across all symbols. The "sim-feed"
    daemon thread keeps that average rate on an absolute schedule, so a wait
    that overshoots is made up by the following ticks.
    """

    name = "simulated"

    def __init__(
        self,
        store: LTPStore,
        universe: Sequence[UniverseMember],
        ticks_per_second: float = 20.0,
        seed: int | None = None,
        volatility_pct: float = 0.05,
        tick_size: float = 0.05,
        stale_after_s: float = 10.0,
    ) -> None:
        super().__init__(stale_after_s=stale_after_s)
        if not (ticks_per_second > 0 and math.isfinite(ticks_per_second)):
            raise ValueError(f"ticks_per_second must be positive, got {ticks_per_second!r}")
        if not universe:
            raise ValueError("universe is empty: the simulated feed needs at least one symbol")
        if not (volatility_pct >= 0 and math.isfinite(volatility_pct)):
            raise ValueError(f"volatility_pct must be zero or positive, got {volatility_pct!r}")
        if not (tick_size > 0 and math.isfinite(tick_size)):
            raise ValueError(f"tick_size must be positive, got {tick_size!r}")
        symbols = [member.symbol for member in universe]
        if len(set(symbols)) != len(symbols):
            raise ValueError("universe lists a symbol more than once")

        self.store = store
        self.ticks_per_second = float(ticks_per_second)
        self.volatility_pct = float(volatility_pct)
        self.tick_size = float(tick_size)
        self._symbols = symbols
        # Prices are walked as whole numbers of ticks so they stay exactly on the grid.
        self._price_ticks = [max(1, round(m.ref_price / self.tick_size)) for m in universe]
        self._volumes = [0] * len(symbols)
        self._price_digits = max(0, -Decimal(str(tick_size)).normalize().as_tuple().exponent)
        self._next_index = 0
        self._rng = random.Random(seed)

        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def next_tick(self) -> tuple[str, float]:
        """Advance the walk by one tick, write it into the store, return (symbol, price).

        For tests and manual stepping; raises RuntimeError while the feed's thread runs.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("next_tick() while the feed thread is running would fork the walk")
        return self._tick()

    def start(self) -> None:
        """Start the "sim-feed" thread; RuntimeError if it is already running."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.name} feed is already running")
        self._stop_event = threading.Event()
        self._mark_starting()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop_event,), name="sim-feed", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and join it for up to `timeout` seconds."""
        self._stop_event.set()
        thread = self._thread
        if thread is None:
            self._mark_stopped()
            return
        if not self._join_thread(thread, timeout):
            return
        self._thread = None
        if self.status().state is not FeedState.ERROR:
            self._mark_stopped()

    def _tick(self) -> tuple[str, float]:
        index = self._next_index
        self._next_index = (index + 1) % len(self._symbols)
        rng = self._rng
        ticks = self._price_ticks[index]
        step = ticks * self.volatility_pct / 100.0 * rng.gauss(0.0, 1.0)
        ticks = max(1, ticks + round(step))
        self._price_ticks[index] = ticks
        volume = self._volumes[index] + rng.randint(1, 500)
        self._volumes[index] = volume

        symbol = self._symbols[index]
        price = round(ticks * self.tick_size, self._price_digits)
        now = datetime.now(UTC)
        self.store.update(symbol, price, volume, exchange_time=now, received_at=now)
        self._record_tick(now)
        return symbol, price

    def _run(self, stop_event: threading.Event) -> None:
        interval = 1.0 / self.ticks_per_second
        self._mark_running()
        next_at = time.monotonic()
        try:
            while not stop_event.is_set():
                self._tick()
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    if stop_event.wait(delay):
                        break
                elif delay < -_MAX_CATCH_UP_S:
                    next_at = time.monotonic()
        except Exception as exc:
            _log.exception("%s feed stopped on an error", self.name)
            self._mark_error(f"{type(exc).__name__}: {exc}")
