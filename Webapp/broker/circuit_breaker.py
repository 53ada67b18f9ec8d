"""A circuit breaker: stop calling a broker that keeps failing, probe it again after a cool-down.

closed ──(failure_threshold consecutive outages)──> open ──(cooldown_s)──> half_open
half_open ──(the probe succeeds)──> closed;  half_open ──(the probe fails)──> open

While open, `before_call` raises CircuitOpen without anything being sent. In
half_open exactly one call (the probe) is let through at a time; the others are
refused until it ends. Only outages count (network errors, 5xx): a rejected
order is an answer from a working broker and counts as a success.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

from Webapp.broker.base import CircuitOpen


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


ChangeHandler = Callable[[CircuitState, CircuitState], None]


class CircuitBreaker:
    """Thread-safe; `clock` is monotonic seconds; `on_change(old, new)` runs outside the lock."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: ChangeHandler | None = None,
        name: str = "broker",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if not cooldown_s > 0:
            raise ValueError(f"cooldown_s must be positive, got {cooldown_s}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.on_change = on_change
        self.name = name
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> CircuitState:
        """The state now (an open circuit whose cool-down has passed reads as half_open)."""
        with self._lock:
            change = self._advance()
        self._notify(change)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def before_call(self) -> None:
        """Let a call through, or raise CircuitOpen (open, or a probe already in flight)."""
        with self._lock:
            change = self._advance()
            state = self._state
            refused = state is CircuitState.OPEN or (
                state is CircuitState.HALF_OPEN and self._probing
            )
            if state is CircuitState.HALF_OPEN and not refused:
                self._probing = True
            retry_in = max(0.0, self._opened_at + self.cooldown_s - self.clock())
        self._notify(change)
        if refused:
            why = (
                f"retrying in {retry_in:.0f}s"
                if state is CircuitState.OPEN
                else "a probe call is in flight"
            )
            raise CircuitOpen(
                f"{self.name}: calls paused after {self.failure_threshold} consecutive failures "
                f"({why})"
            )

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._probing = False
            change = self._set(CircuitState.CLOSED)
        self._notify(change)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            was_probe = self._probing
            self._probing = False
            trips = self._state is CircuitState.CLOSED and self._failures >= self.failure_threshold
            probe_failed = was_probe or self._state is CircuitState.HALF_OPEN
            change = self._open() if trips or probe_failed else None
        self._notify(change)

    def record_neutral(self) -> None:
        """A call ended with no verdict on the broker's health (e.g. HTTP 429): free the probe."""
        with self._lock:
            self._probing = False

    # --- internals (called with the lock held) ---------------------------------------------

    def _advance(self) -> tuple[CircuitState, CircuitState] | None:
        if self._state is CircuitState.OPEN and self.clock() - self._opened_at >= self.cooldown_s:
            return self._set(CircuitState.HALF_OPEN)
        return None

    def _open(self) -> tuple[CircuitState, CircuitState] | None:
        self._opened_at = self.clock()
        return self._set(CircuitState.OPEN)

    def _set(self, new: CircuitState) -> tuple[CircuitState, CircuitState] | None:
        old, self._state = self._state, new
        return None if old is new else (old, new)

    def _notify(self, change: tuple[CircuitState, CircuitState] | None) -> None:
        if change is not None and self.on_change is not None:
            self.on_change(*change)
