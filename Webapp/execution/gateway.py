"""The order-gateway thread: runs broker calls in order, off the engine thread, and reports each.

The engine submits requests (`PlaceOrder`, `CancelOrder`, `ModifyGtt`, reads for
reconciliation, …); one thread executes them one at a time in submission order and hands
every outcome to `deliver` (the engine queue's `put`) as `Done(request, value)` or
`Failed(request, error, ambiguous)`. Each submitted request gets exactly one result.

Rules it keeps (shared/STRATEGY.md, "Limits and safety"):
- Nothing is retried here. Retries of idempotent calls and the tag lookup after a lost
  placement reply live in the broker (KiteBroker); the gateway only reports.
- No error is swallowed: a `BrokerError` becomes `Failed`; any other exception is logged
  with its traceback and becomes `Failed` with an `UnexpectedFailure` wrapping it.
- `ambiguous` is True when a write may have reached the broker: a `NetworkUnavailable`
  with `maybe_applied`, or an unexpected exception from a write (the call may have gone
  out before the bug). The engine must reconcile (orders by tag, the GTT list) before
  acting on that intent again. A failed read is never ambiguous.
- `submit_urgent` puts a request ahead of everything queued (emergency-stop cancels);
  the request already in flight is never interrupted.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from Webapp.broker.base import (
    Broker,
    BrokerError,
    GttRequest,
    NetworkUnavailable,
    OrderRequest,
    OrderType,
)
from Webapp.execution.clock import Clock

log = logging.getLogger(__name__)


# --- errors ---------------------------------------------------------------------------------


class GatewayStopped(BrokerError):
    """The gateway is stopped: the request was refused, or abandoned unsent by `stop`."""


class UnexpectedFailure(BrokerError):
    """A broker call raised something other than a BrokerError (a bug); `original` is it."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayRequest:
    """One broker call for the engine intent `intent_id` (a leg's client tag, a command id)."""

    intent_id: str
    # True for calls that change something at the broker: their failures may be ambiguous.
    writes: ClassVar[bool] = True

    def call(self, broker: Broker) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class PlaceOrder(GatewayRequest):
    order: OrderRequest

    def call(self, broker: Broker) -> Any:
        return broker.place_order(self.order)


@dataclass(frozen=True)
class ModifyOrder(GatewayRequest):
    order_id: str
    quantity: int | None = None
    price: float | None = None
    order_type: OrderType | None = None

    def call(self, broker: Broker) -> Any:
        return broker.modify_order(
            self.order_id, quantity=self.quantity, price=self.price, order_type=self.order_type
        )


@dataclass(frozen=True)
class CancelOrder(GatewayRequest):
    order_id: str

    def call(self, broker: Broker) -> Any:
        return broker.cancel_order(self.order_id)


@dataclass(frozen=True)
class PlaceGtt(GatewayRequest):
    gtt: GttRequest

    def call(self, broker: Broker) -> Any:
        return broker.place_gtt(self.gtt)


@dataclass(frozen=True)
class ModifyGtt(GatewayRequest):
    gtt_id: int
    gtt: GttRequest

    def call(self, broker: Broker) -> Any:
        return broker.modify_gtt(self.gtt_id, self.gtt)


@dataclass(frozen=True)
class DeleteGtt(GatewayRequest):
    """Done's value is the GttState the GTT was in: ACTIVE (sell may follow) or TRIGGERED."""

    gtt_id: int

    def call(self, broker: Broker) -> Any:
        return broker.delete_gtt(self.gtt_id)


@dataclass(frozen=True)
class FetchGtt(GatewayRequest):
    """One GTT as the broker holds it now (after a failed modify or delete, or a trigger)."""

    gtt_id: int
    writes: ClassVar[bool] = False

    def call(self, broker: Broker) -> Any:
        return broker.get_gtt(self.gtt_id)


@dataclass(frozen=True)
class ReconcileOrders(GatewayRequest):
    writes: ClassVar[bool] = False

    def call(self, broker: Broker) -> Any:
        return broker.orders()


@dataclass(frozen=True)
class FindOrderByTag(GatewayRequest):
    """After an ambiguous placement or a restart: the order carrying `tag`, or None."""

    tag: str
    writes: ClassVar[bool] = False

    def call(self, broker: Broker) -> Any:
        return broker.find_order_by_tag(self.tag)


@dataclass(frozen=True)
class ReconcileGtts(GatewayRequest):
    writes: ClassVar[bool] = False

    def call(self, broker: Broker) -> Any:
        return broker.gtts()


@dataclass(frozen=True)
class ReconcilePositions(GatewayRequest):
    writes: ClassVar[bool] = False

    def call(self, broker: Broker) -> Any:
        return broker.positions()


@dataclass(frozen=True)
class ReconcileHoldings(GatewayRequest):
    writes: ClassVar[bool] = False

    def call(self, broker: Broker) -> Any:
        return broker.holdings()


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    """The broker call returned `value` (an Order, a GTT id, a GttState, a list, or None)."""

    request: GatewayRequest
    value: Any
    at: datetime | None = None  # by the gateway's clock, when the call returned


@dataclass(frozen=True)
class Failed:
    request: GatewayRequest
    error: BrokerError
    ambiguous: bool  # the write may have been applied: reconcile before acting again
    at: datetime | None = None


Result = Done | Failed


@dataclass(frozen=True)
class GatewayStatus:
    running: bool
    queue_depth: int
    in_flight: GatewayRequest | None
    done: int
    failed: int


# Queue priorities: lower runs first; the sequence number keeps each priority FIFO.
_URGENT, _NORMAL = 0, 1


class _Stop:
    """Queued by `stop` behind every accepted request: the thread ends when it reaches it."""


_STOP = _Stop()


class OrderGateway:
    """One thread, one priority queue of broker requests; results go to `deliver`.

    `stop()` drains by default: it refuses new requests, lets the thread finish every
    request already accepted, then ends it. `stop(drain=False)` abandons instead: the call
    in flight completes and is reported, and every request still queued is reported as
    `Failed(GatewayStopped, ambiguous=False)` without being sent. When `timeout` passes
    before the thread ends, `stop` returns False and switches to abandoning, so the
    thread ends right after the call it is in; no accepted request goes unreported.
    """

    def __init__(
        self,
        broker: Broker,
        deliver: Callable[[Result], object],
        *,
        clock: Clock,
        name: str = "order-gateway",
    ) -> None:
        self._broker = broker
        self._deliver = deliver
        self._clock = clock
        self._name = name
        self._queue: queue.PriorityQueue[tuple[int, int, object]] = queue.PriorityQueue()
        self._sequence = itertools.count()
        # Guards `_closed` and `_queued` so no request slips in behind the stop marker.
        self._lock = threading.Lock()
        self._closed = False
        self._abandon = threading.Event()
        self._queued = 0
        self._in_flight: GatewayRequest | None = None
        self._done = 0
        self._failed = 0
        self._thread: threading.Thread | None = None

    # --- called from other threads (the engine) ------------------------------------------

    def start(self) -> None:
        """Start the thread; requests submitted before this wait for it."""
        with self._lock:
            if self._thread is not None or self._closed:
                raise RuntimeError(f"{self._name} already started or stopped")
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def submit(self, request: GatewayRequest) -> None:
        """Queue `request` behind every accepted request; raises GatewayStopped after stop."""
        self._put(_NORMAL, request)

    def send(self, request: GatewayRequest, urgent: bool = False) -> None:
        """`submit` or `submit_urgent` (the trader's single entry point)."""
        self._put(_URGENT if urgent else _NORMAL, request)

    def submit_urgent(self, request: GatewayRequest) -> None:
        """Queue `request` ahead of every normal request (FIFO among urgent ones)."""
        self._put(_URGENT, request)

    def stop(self, timeout: float | None = None, *, drain: bool = True) -> bool:
        """Refuse new requests and end the thread (class docstring); True once it has ended.

        Safe to call again, e.g. without a timeout after one that returned False. A gateway
        never started reports everything queued as unsent, on the calling thread.
        """
        with self._lock:
            first = not self._closed
            if first:
                self._closed = True
                self._queue.put((_NORMAL, next(self._sequence), _STOP))
            thread = self._thread
        if not drain:
            self._abandon.set()
        if thread is None:
            # Never started: nothing was sent, so everything queued is abandoned, here.
            if first:
                self._abandon.set()
                self._run()
            return True
        thread.join(timeout)
        if thread.is_alive():
            self._abandon.set()
            return False
        return True

    @property
    def queue_depth(self) -> int:
        """Requests accepted and not yet started."""
        return self._queued

    @property
    def in_flight(self) -> GatewayRequest | None:
        """The request whose broker call is running now, if any."""
        return self._in_flight

    def status(self) -> GatewayStatus:
        thread = self._thread
        return GatewayStatus(
            running=thread is not None and thread.is_alive(),
            queue_depth=self._queued,
            in_flight=self._in_flight,
            done=self._done,
            failed=self._failed,
        )

    def execute(self, request: GatewayRequest) -> Result:
        """Run one request on the calling thread and return its result (nothing delivered).

        The thread uses this; a backtest that wants broker calls inline (deterministic,
        no thread) may call it directly.
        """
        try:
            value = request.call(self._broker)
        except BrokerError as error:
            ambiguous = (
                request.writes and isinstance(error, NetworkUnavailable) and error.maybe_applied
            )
            log.warning(
                "%s %s (intent %s) failed%s: %s",
                self._name,
                type(request).__name__,
                request.intent_id,
                " (ambiguous: reconcile before acting)" if ambiguous else "",
                error.message,
            )
            return Failed(request, error, ambiguous, self._clock.now())
        except Exception as exc:
            log.exception(
                "%s %s (intent %s) raised unexpectedly",
                self._name,
                type(request).__name__,
                request.intent_id,
            )
            wrapped = UnexpectedFailure(exc)
            wrapped.__cause__ = exc
            # A write that blew up may already have been sent: treat it like a lost reply.
            return Failed(request, wrapped, request.writes, self._clock.now())
        return Done(request, value, self._clock.now())

    # --- internals -----------------------------------------------------------------------

    def _put(self, priority: int, request: GatewayRequest) -> None:
        if not isinstance(request, GatewayRequest):
            raise TypeError(f"not a gateway request: {request!r}")
        with self._lock:
            if self._closed:
                raise GatewayStopped(
                    f"{self._name} is stopped: {type(request).__name__} "
                    f"(intent {request.intent_id}) not accepted"
                )
            self._queued += 1
            self._queue.put((priority, next(self._sequence), request))

    def _run(self) -> None:
        while True:
            _, _, item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, GatewayRequest)
            with self._lock:
                self._queued -= 1
            if self._abandon.is_set():
                result: Result = Failed(
                    item,
                    GatewayStopped(
                        f"{self._name} stopped before {type(item).__name__} "
                        f"(intent {item.intent_id}) was sent"
                    ),
                    False,
                    self._clock.now(),
                )
            else:
                self._in_flight = item
                try:
                    result = self.execute(item)
                finally:
                    self._in_flight = None
            if isinstance(result, Done):
                self._done += 1
            else:
                self._failed += 1
            try:
                self._deliver(result)
            except Exception:
                # The engine queue's put does not fail; if a deliver does, say so loudly
                # and keep serving: the other intents still need their results.
                log.exception("%s could not deliver %r", self._name, result)
