"""Small helpers shared by tests."""

from __future__ import annotations

import threading


def finishes_within(fn, timeout: float = 5.0) -> bool:
    """Run fn in a daemon thread; False if it is still running after `timeout` (a deadlock)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if errors:
        raise errors[0]
    return not thread.is_alive()


class FakeClock:
    """Monotonic seconds that move only when someone sleeps or the test advances them.

    Shared by rate limiters, the circuit breaker, retry backoff and kitesim, so a test
    checks request rates and cool-downs without waiting. `sleeps` records each wait.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
