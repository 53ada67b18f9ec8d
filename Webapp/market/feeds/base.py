"""The interface every price feed implements, and the tick bookkeeping behind its status."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

_log = logging.getLogger(__name__)


class FeedState(StrEnum):
    STARTING = "starting"  # start() called, first connection or loop not yet up
    RUNNING = "running"  # delivering ticks
    STALE = "stale"  # running, but no tick for more than stale_after_s
    STOPPED = "stopped"  # never started, or stopped on request
    ERROR = "error"  # the feed gave up; detail says why


@dataclass(frozen=True)
class FeedStatus:
    """What a feed reports to the health page and the engine."""

    name: str
    state: FeedState
    ticks_total: int
    last_tick_at: datetime | None
    detail: str = ""


class Feed(ABC):
    """A source of ticks that writes into an LTPStore from its own thread.

    Subclasses call `_mark_running`, `_record_tick`, `_mark_stopped` and
    `_mark_error`; `status()` turns that into a FeedStatus, reporting STALE when
    a running feed has gone quiet for longer than `stale_after_s`.
    """

    name: str = "feed"

    def __init__(self, *, stale_after_s: float = 10.0) -> None:
        if not (stale_after_s > 0 and stale_after_s != float("inf")):
            raise ValueError(f"stale_after_s must be positive and finite, got {stale_after_s!r}")
        self.stale_after_s = stale_after_s
        self._state_lock = threading.Lock()
        self._state = FeedState.STOPPED
        self._detail = ""
        self._running_since: datetime | None = None
        # Written only by the feed's own thread; read without a lock by status().
        self._ticks_total = 0
        self._last_tick_at: datetime | None = None

    @abstractmethod
    def start(self) -> None:
        """Begin delivering ticks in the background; returns at once."""

    @abstractmethod
    def stop(self, timeout: float = 5.0) -> None:
        """Stop delivering ticks and wait up to `timeout` seconds for the feed's thread."""

    def status(self, now: datetime | None = None) -> FeedStatus:
        """The feed's state as of `now` (default: the current UTC time)."""
        with self._state_lock:
            state, detail, running_since = self._state, self._detail, self._running_since
        last_tick_at = self._last_tick_at
        if state is FeedState.RUNNING:
            quiet_since = last_tick_at or running_since
            if now is None:
                now = datetime.now(UTC)
            if quiet_since is not None:
                quiet_s = (now - quiet_since).total_seconds()
                if quiet_s > self.stale_after_s:
                    state = FeedState.STALE
                    detail = detail or f"no tick for {quiet_s:.1f}s"
        return FeedStatus(self.name, state, self._ticks_total, last_tick_at, detail)

    def _mark_starting(self) -> None:
        self._set_state(FeedState.STARTING, "")

    def _mark_running(self, now: datetime | None = None) -> None:
        with self._state_lock:
            self._state = FeedState.RUNNING
            self._detail = ""
            self._running_since = now or datetime.now(UTC)

    def _join_thread(self, thread: threading.Thread, timeout: float) -> bool:
        """Wait for the feed's thread to end; False when it cannot be (or was not) joined."""
        if thread is threading.current_thread():
            # Called from a store subscriber on our own thread: the loop exits after this tick.
            return False
        thread.join(timeout)
        if thread.is_alive():
            _log.warning("%s feed thread did not stop within %.1fs", self.name, timeout)
            self._mark_stopped(f"thread still alive after {timeout:.1f}s")
            return False
        return True

    def _mark_stopped(self, detail: str = "") -> None:
        self._set_state(FeedState.STOPPED, detail)

    def _mark_error(self, detail: str) -> None:
        self._set_state(FeedState.ERROR, detail)

    def _record_tick(self, at: datetime) -> None:
        self._ticks_total += 1
        self._last_tick_at = at

    def _set_state(self, state: FeedState, detail: str) -> None:
        with self._state_lock:
            self._state = state
            self._detail = detail
            if state is not FeedState.RUNNING:
                self._running_since = None
