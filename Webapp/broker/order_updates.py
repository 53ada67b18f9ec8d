"""Order updates from several sources (ticker, postback, polling) merged into one stream.

Kite may tell us about the same change three times: on the ticker's websocket,
in a postback, and in the order book the poller reads. `OrderUpdateTracker`
emits each distinct state of an order once, whichever source brings it first,
and never lets an order go back (a final state is final; the filled quantity
only grows). `OrderPoller` is the fallback when the ticker and postbacks are
silent: it reads the order book every few seconds and feeds the tracker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from Webapp.broker.base import BrokerError, Order, OrderUpdate, TokenExpired

_log = logging.getLogger(__name__)

# What makes two reports of an order "the same state".
_Key = tuple[str, int, int, float | None]


def _key(order: Order) -> _Key:
    return (order.state.value, order.filled_quantity, order.quantity, order.price)


class OrderUpdateTracker:
    """Deduplicates order updates; thread-safe. `emit` is called outside the lock."""

    def __init__(
        self,
        emit: Callable[[OrderUpdate], None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._emit = emit
        self._now = now
        self._lock = threading.Lock()
        self._last: dict[str, Order] = {}

    def ingest(self, order: Order, source: str) -> OrderUpdate | None:
        """Emit `order` as an update from `source` unless it says nothing new; returns it if so."""
        with self._lock:
            previous = self._last.get(order.order_id)
            if previous is not None and not _is_news(previous, order):
                return None
            self._last[order.order_id] = order
        update = OrderUpdate(order, source, self._now())
        self._emit(update)
        return update

    def seen(self, order_id: str) -> Order | None:
        """The newest state emitted for `order_id`."""
        with self._lock:
            return self._last.get(order_id)


def _is_news(previous: Order, order: Order) -> bool:
    if _key(previous) == _key(order):
        return False
    if previous.state.is_final:
        return False  # a late or stale report of an order that already ended
    # An older snapshot (the poller can lag the ticker) never undoes a fill.
    return order.filled_quantity >= previous.filled_quantity


class OrderPoller:
    """A daemon thread that reads `fetch()` every `interval_s` and feeds each order to `ingest`."""

    def __init__(
        self,
        fetch: Callable[[], list[Order]],
        ingest: Callable[[Order, str], object],
        interval_s: float,
        name: str = "kite-order-poll",
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self._fetch = fetch
        self._ingest = ingest
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.polls = 0  # completed reads, for status pages and tests
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)

    def poll_once(self) -> None:
        try:
            orders = self._fetch()
        except TokenExpired:
            self.last_error = "access token expired"  # noqa: S105 (a message)
            return  # status() already says so; the next poll after a login resumes
        except BrokerError as exc:
            self.last_error = exc.message
            _log.warning("order poll failed: %s", exc.message)
            return
        except Exception:  # a bug must not end the fallback silently
            _log.exception("order poll failed")
            return
        self.last_error = None
        for order in orders:
            try:
                self._ingest(order, "poll")
            except Exception:
                _log.exception("order update handler failed for %s", order.order_id)
        self.polls += 1
