"""The engine thread: the single consumer of one event queue and the only writer of strategy state.

Events: "ticks are ready" (the LTPStore changed), broker results from the order gateway,
order updates from the broker, and commands from the UI. Without a trader attached the
engine only publishes coalesced prices; with one (`attach`) every event goes to the
trader, which also gets a timer tick about once a second (scans, exit timeouts, retries)
and whose view is published at most `PUBLISH_S` apart. Broker calls never run here:
the trader hands them to the order gateway thread, whose results come back as events.

A bug while handling one event fails the trader closed (no new orders, the reason on
screen) but keeps the loop alive, so that results are still recorded and an emergency
stop still works.
"""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from Webapp.broker.base import OrderUpdate
from Webapp.event_bus import EventBus
from Webapp.execution.commands import Command, CommandKind
from Webapp.execution.gateway import Done, Failed, OrderGateway
from Webapp.execution.trading_view import TRADING_TOPIC, TradingView, empty_view
from Webapp.market.ltp_store import LTPStore, Quote

if TYPE_CHECKING:
    from Webapp.execution.trader import Trader

log = logging.getLogger(__name__)

PRICES_TOPIC = "prices"
ENGINE_TOPIC = "engine"


class EngineState(StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"
    FAILED = "failed"


class _TicksReady:
    """Marker event: the store has prices the engine has not seen yet."""


class _Stop:
    """Marker event: finish the loop."""


TICKS_READY = _TicksReady()
STOP = _Stop()

# A measurement hook (the benchmarks pass one; None in the product): called on the engine
# thread as each piece of work starts, with its kind (see `event_kind`, plus "timer" and
# "view") and the event (None for those two); the callable it returns is called when that
# piece of work ends, errors included.
EventTimer = Callable[[str, object], Callable[[], None]]


def event_kind(event: object) -> str:
    """What an engine event is, as the `EventTimer` hook is told."""
    if event is TICKS_READY:
        return "prices"
    if isinstance(event, Done | Failed):
        return "result"
    if isinstance(event, OrderUpdate):
        return "order_update"
    if isinstance(event, Command):
        return "command"
    return type(event).__name__


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState
    events_handled: int
    queue_depth: int
    last_beat_age_s: float | None
    detail: str = ""
    max_queue_depth: int = 0


# How long another thread may hold the GIL before the engine thread gets it: Python's 5 ms
# default is the whole latency budget of a price; the feed's thread yields it sooner.
SWITCH_INTERVAL_S = 0.001


def settle_interpreter() -> None:
    """Tune the process for the engine, once everything long-lived is built: a shorter
    GIL switch interval, and the objects made so far frozen out of the garbage
    collector's full passes (they live as long as the process; scanning them each pass
    stalled every thread for tens of milliseconds)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    gc.collect()
    gc.freeze()


class Engine:
    """One thread, one queue. Other threads only ever put events on the queue."""

    # The loop wakes at least this often, so a live thread always has a fresh beat.
    BEAT_S = 1.0
    TIMER_S = 1.0  # the trader's timer tick
    PRICES_PER_EVENT = 20  # one event hands the trader at most this many symbols' prices
    PUBLISH_S = 0.25  # the trading view goes out at most 4 times a second

    def __init__(self, store: LTPStore, bus: EventBus) -> None:
        self._store = store
        self._bus = bus
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Set while a TICKS_READY is queued: a burst of ticks costs one event.
        self._ticks_pending = threading.Event()
        self._unseen: dict[str, Quote] = {}  # changed prices not yet handed to the trader
        self._seen_version = 0
        self._thread: threading.Thread | None = None
        self._unsubscribe = None
        self._state = EngineState.STOPPED
        self._detail = ""
        self._events_handled = 0
        self._last_beat: float | None = None
        self._view: TradingView = empty_view()
        self._trader: Trader | None = None
        self._gateway: OrderGateway | None = None
        self._autostart = False
        self._price_time: Callable[[Quote], datetime | None] = lambda _q: None
        self._event_timer: EventTimer | None = None
        self._last_timer = 0.0
        self._last_publish = 0.0
        self.max_queue_depth = 0

    def attach(
        self,
        trader: Trader,
        gateway: OrderGateway,
        *,
        autostart: bool = True,
        price_time: Callable[[Quote], datetime | None] | None = None,
        event_timer: EventTimer | None = None,
    ) -> None:
        """Give the engine its trader and gateway (before `start`).

        `price_time(quote)` is the time a price counts as (a replay's market time); None
        means the trader's clock. With `autostart` the engine reconciles and starts trading
        as "system" as soon as it starts. `event_timer`: the benchmarks' measurement hook.
        """
        if self._thread is not None:
            raise RuntimeError("attach before start")
        self._trader, self._gateway, self._autostart = trader, gateway, autostart
        if price_time is not None:
            self._price_time = price_time
        self._event_timer = event_timer
        self._view = empty_view(trader.broker.name)

    @property
    def trader(self) -> Trader | None:
        return self._trader

    # -- called from other threads -------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("engine already started")
        settle_interpreter()
        self._unsubscribe = self._store.subscribe(self._on_tick)
        self._state = EngineState.RUNNING
        self._last_beat = time.monotonic()
        if self._gateway is not None:
            self._gateway.start()
        if self._trader is not None and self._autostart:
            self._queue.put(Command(CommandKind.START, "system", note="process start"))
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()
        self._publish_state()

    def stop(self, timeout: float = 5.0) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._queue.put(STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._gateway is not None:
            # Calls already accepted still run (a sell in flight must not be abandoned);
            # their results are recorded on the next start by reconciliation.
            self._gateway.stop(timeout)
        if self._state is EngineState.RUNNING:
            self._state = EngineState.STOPPED
            self._publish_state()

    def submit(self, event: object) -> None:
        """Put any event on the queue (gateway results and order updates come this way)."""
        self._queue.put(event)

    def command(self, command: Command) -> None:
        """Queue a control; `command.wait(timeout)` gives its outcome once handled."""
        self._queue.put(command)

    def view(self) -> TradingView:
        """The latest published trading view (an immutable snapshot; safe from any thread)."""
        return self._view

    def status(self) -> EngineStatus:
        beat = self._last_beat
        return EngineStatus(
            state=self._state,
            events_handled=self._events_handled,
            queue_depth=self._queue.qsize(),
            last_beat_age_s=None if beat is None else time.monotonic() - beat,
            detail=self._detail,
            max_queue_depth=self.max_queue_depth,
        )

    def _on_tick(self, _quote: Quote) -> None:
        # Runs on the feed's thread: hand off and return, never block it.
        if not self._ticks_pending.is_set():
            self._ticks_pending.set()
            self._queue.put(TICKS_READY)

    # -- the engine thread ----------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                try:
                    event = self._queue.get(timeout=self.BEAT_S)
                except queue.Empty:
                    event = None
                self._last_beat = time.monotonic()
                if event is STOP:
                    self._shutdown_trader()
                    return
                if event is not None:
                    depth = self._queue.qsize()
                    if depth > self.max_queue_depth:
                        self.max_queue_depth = depth
                    if self._event_timer is None:
                        self._guarded(self._handle, event)
                    else:
                        self._timed(event_kind(event), event, self._handle)
                    self._events_handled += 1
                if self._trader is not None:
                    self._trader_housekeeping()
        except Exception as exc:
            # Fail closed: a bug in the engine stops it visibly instead of trading on.
            log.exception("engine failed")
            self._state = EngineState.FAILED
            self._detail = f"{type(exc).__name__}: {exc}"
            self._publish_state()

    def _guarded(self, fn: Callable[[object], None], event: object) -> None:
        if self._trader is None:
            fn(event)
            return
        try:
            fn(event)
        except Exception as exc:
            log.exception("engine: handling %r failed", type(event).__name__)
            self._trader.fail(
                f"internal error while handling {type(event).__name__}: {type(exc).__name__}: {exc}"
            )
            if isinstance(event, Command) and event.wait(0) is None:
                event.finish(False, f"failed: {type(exc).__name__}: {exc}")

    def _timed(self, kind: str, event: object, fn: Callable[[object], None]) -> None:
        """`_guarded(fn, event)` between the measurement hook's start and end."""
        assert self._event_timer is not None
        done = self._event_timer(kind, event)
        try:
            self._guarded(fn, event)
        finally:
            done()

    def _hand_over_prices(self, trader: Trader) -> None:
        """At most PRICES_PER_EVENT symbols' latest prices to the trader; the rest go back
        to the end of the queue, so a result or a command waits behind a few prices, not
        behind a whole market's."""
        symbols = list(itertools.islice(self._unseen, self.PRICES_PER_EVENT))
        prices = []
        for symbol in symbols:
            quote = self._unseen.pop(symbol)
            prices.append((symbol, quote.ltp, self._price_time(quote)))
        trader.on_prices(prices)
        if self._unseen and not self._ticks_pending.is_set():
            self._ticks_pending.set()
            self._queue.put(TICKS_READY)

    def _handle(self, event: object) -> None:
        trader = self._trader
        if event is TICKS_READY:
            # Clear before reading, so a tick landing meanwhile queues a new event.
            self._ticks_pending.clear()
            self._seen_version, changed = self._store.changes_since(self._seen_version)
            if changed:
                self._bus.publish(PRICES_TOPIC, changed)
                if trader is not None:
                    self._unseen.update(changed)  # a newer quote replaces one still waiting
            if trader is not None and self._unseen:
                self._hand_over_prices(trader)
        elif trader is not None and isinstance(event, Done | Failed):
            trader.on_result(event)
        elif trader is not None and isinstance(event, OrderUpdate):
            trader.on_order_update(event)
        elif isinstance(event, Command):
            if trader is None:
                event.finish(False, "no trader in this process")
            else:
                trader.on_command(event)
        else:
            raise TypeError(f"unknown engine event {event!r}")

    def _trader_housekeeping(self) -> None:
        trader = self._trader
        assert trader is not None
        now = time.monotonic()
        if now - self._last_timer >= self.TIMER_S:
            self._last_timer = now
            if self._event_timer is None:
                self._guarded(lambda _e: trader.on_timer(), None)
            else:
                self._timed("timer", None, lambda _e: trader.on_timer())
        if trader.changed and now - self._last_publish >= self.PUBLISH_S:
            self._last_publish = now
            trader.changed = False
            done = None if self._event_timer is None else self._event_timer("view", None)
            try:
                self._view = trader.build_view()
                self._bus.publish(TRADING_TOPIC, self._view)
            finally:
                if done is not None:
                    done()

    def _shutdown_trader(self) -> None:
        trader = self._trader
        if trader is None:
            return
        try:
            trader.flush_stops()
        except Exception:
            log.exception("engine: saving the trailed stops on stop failed")
        self._view = trader.build_view()
        self._bus.publish(TRADING_TOPIC, self._view)

    def _publish_state(self) -> None:
        self._bus.publish(ENGINE_TOPIC, {"state": self._state.value, "detail": self._detail})
