"""The engine thread: the single consumer of one event queue and the only writer of strategy state.

Today it turns "ticks are ready" into coalesced price snapshots on the event
bus; the ladder rules plug into the same loop (scan timer, commands, broker
results) without changing how events reach it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from Webapp.event_bus import EventBus
from Webapp.market.ltp_store import LTPStore, Quote

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


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState
    events_handled: int
    queue_depth: int
    last_beat_age_s: float | None
    detail: str = ""


class Engine:
    """One thread, one queue. Other threads only ever put events on the queue."""

    # The loop wakes at least this often, so a live thread always has a fresh beat.
    BEAT_S = 1.0

    def __init__(self, store: LTPStore, bus: EventBus) -> None:
        self._store = store
        self._bus = bus
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Set while a TICKS_READY is queued: a burst of ticks costs one event.
        self._ticks_pending = threading.Event()
        self._seen_version = 0
        self._thread: threading.Thread | None = None
        self._unsubscribe = None
        self._state = EngineState.STOPPED
        self._detail = ""
        self._events_handled = 0
        self._last_beat: float | None = None

    # -- called from other threads -------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("engine already started")
        self._unsubscribe = self._store.subscribe(self._on_tick)
        self._state = EngineState.RUNNING
        self._last_beat = time.monotonic()
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
        if self._state is EngineState.RUNNING:
            self._state = EngineState.STOPPED
            self._publish_state()

    def submit(self, event: object) -> None:
        self._queue.put(event)

    def status(self) -> EngineStatus:
        beat = self._last_beat
        return EngineStatus(
            state=self._state,
            events_handled=self._events_handled,
            queue_depth=self._queue.qsize(),
            last_beat_age_s=None if beat is None else time.monotonic() - beat,
            detail=self._detail,
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
                    return
                if event is not None:
                    self._handle(event)
                    self._events_handled += 1
        except Exception as exc:
            # Fail closed: a bug in the engine stops it visibly instead of trading on.
            log.exception("engine failed")
            self._state = EngineState.FAILED
            self._detail = f"{type(exc).__name__}: {exc}"
            self._publish_state()

    def _handle(self, event: object) -> None:
        if event is TICKS_READY:
            # Clear before reading, so a tick landing meanwhile queues a new event.
            self._ticks_pending.clear()
            self._seen_version, changed = self._store.changes_since(self._seen_version)
            if changed:
                self._bus.publish(PRICES_TOPIC, changed)
        else:
            raise TypeError(f"unknown engine event {event!r}")

    def _publish_state(self) -> None:
        self._bus.publish(ENGINE_TOPIC, {"state": self._state.value, "detail": self._detail})
