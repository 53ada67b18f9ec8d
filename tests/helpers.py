"""Small helpers shared by tests."""

from __future__ import annotations

import threading
import time


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


def wait_for_trading(runtime, *states: str, timeout: float = 10.0):
    """Wait until the engine publishes a trading view in one of `states` (default running)."""
    import queue as _queue

    from Webapp.execution.trading_view import TRADING_TOPIC

    wanted = set(states or ("running",))
    views: _queue.Queue = _queue.Queue()
    unsubscribe = runtime.bus.subscribe(TRADING_TOPIC, lambda _t, view: views.put(view))
    try:
        view = runtime.engine.view()
        deadline = time.monotonic() + timeout
        while view.state.value not in wanted:
            view = views.get(timeout=max(0.0, deadline - time.monotonic()))
        return view
    finally:
        unsubscribe()
