"""The order gateway over a real PaperBroker: typed results, order, urgency, stop, no retries."""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime

import pytest

from tests.unit.paper_support import SYMBOL, limit, make_broker, market, memory_sessions, params
from Webapp.broker.base import (
    GttRequest,
    GttState,
    GttType,
    InputRejected,
    NetworkUnavailable,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
)
from Webapp.broker.paper import PaperBroker
from Webapp.execution.clock import SimulatedClock
from Webapp.execution.gateway import (
    CancelOrder,
    DeleteGtt,
    Done,
    Failed,
    FindOrderByTag,
    GatewayStopped,
    ModifyGtt,
    ModifyOrder,
    OrderGateway,
    PlaceGtt,
    PlaceOrder,
    ReconcileGtts,
    ReconcileHoldings,
    ReconcileOrders,
    ReconcilePositions,
    Result,
    UnexpectedFailure,
)

START = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # a Monday, 09:30 IST
# Only a guard against a hung test: every wait below ends on an event long before it.
HANG_GUARD_S = 10


class Results:
    """The gateway's `deliver`: a queue the test waits on, like the engine queue."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Result] = queue.Queue()

    def __call__(self, result: Result) -> None:
        self._queue.put(result)

    def next(self) -> Result:
        return self._queue.get(timeout=HANG_GUARD_S)

    def take(self, count: int) -> list[Result]:
        return [self.next() for _ in range(count)]

    @property
    def waiting(self) -> int:
        return self._queue.qsize()


class GatedBroker(PaperBroker):
    """A PaperBroker whose placement of the tag "BLOCK" waits until the test opens the gate."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def place_order(self, request: OrderRequest):
        if request.tag == "BLOCK":
            self.entered.set()
            self.gate.wait()
        return super().place_order(request)


class FaultyBroker(PaperBroker):
    """A PaperBroker whose calls raise what the test sets: a broker error or a plain bug."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.raises: Exception | None = None
        self.placements = 0

    def place_order(self, request: OrderRequest):
        self.placements += 1
        if self.raises is not None:
            raise self.raises
        return super().place_order(request)

    def positions(self):
        if self.raises is not None:
            raise self.raises
        return super().positions()


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
def results() -> Results:
    return Results()


@pytest.fixture
def broker(clock) -> PaperBroker:
    paper = make_broker(clock=clock.now)
    paper.on_price(SYMBOL, 1000.0)
    return paper


@pytest.fixture
def make_gateway(results, clock):
    made: list[OrderGateway] = []

    def make(broker, *, start: bool = True) -> OrderGateway:
        gateway = OrderGateway(broker, results, clock=clock)
        if start:
            gateway.start()
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gate = getattr(gateway._broker, "gate", None)
        if gate is not None:
            gate.set()  # a test that failed mid-way must not leave the thread blocked
        gateway.stop(drain=False)


def gated(clock, cls=GatedBroker):
    """A fresh PaperBroker of class `cls` on the test's clock, with a price for INFY."""
    paper = cls(memory_sessions(), params(charges=False), clock=clock.now, starting_cash=1e6)
    paper.on_price(SYMBOL, 1000.0)
    return paper


def test_a_market_buy_is_delivered_done_with_the_filled_order(broker, make_gateway, results):
    gateway = make_gateway(broker)
    request = PlaceOrder("leg-1", market(Side.BUY, 3, tag="Lbuy1"))
    gateway.submit(request)
    result = results.next()
    assert isinstance(result, Done) and result.request is request
    assert result.value.state is OrderState.FILLED and result.value.tag == "Lbuy1"
    assert result.value.filled_quantity == 3
    assert result.at == START
    assert [o.order_id for o in broker.orders()] == [result.value.order_id]


def test_an_input_rejection_is_failed_and_not_ambiguous(clock, make_gateway, results):
    paper = make_broker(clock=clock.now)  # no price yet: a market order cannot fill
    gateway = make_gateway(paper)
    gateway.submit(PlaceOrder("leg-1", market(Side.BUY, 3, tag="Lnop")))
    result = results.next()
    assert isinstance(result, Failed) and isinstance(result.error, InputRejected)
    assert result.ambiguous is False
    assert paper.orders() == []


def test_requests_run_and_report_in_submission_order(broker, make_gateway, results):
    gateway = make_gateway(broker)
    tags = [f"Lord{i}" for i in range(5)]
    for tag in tags:
        gateway.submit(PlaceOrder(tag, market(Side.BUY, 1, tag=tag)))
    gateway.submit(ReconcileOrders("check"))
    delivered = results.take(6)
    assert [r.request.intent_id for r in delivered] == [*tags, "check"]
    assert [o.tag for o in delivered[-1].value] == tags


def test_an_urgent_request_jumps_the_queue_but_not_the_call_in_flight(clock, make_gateway, results):
    paper = gated(clock)
    gateway = make_gateway(paper)
    gateway.submit(PlaceOrder("blocker", market(Side.BUY, 1, tag="BLOCK")))
    assert paper.entered.wait(HANG_GUARD_S)
    gateway.submit(PlaceOrder("a", market(Side.BUY, 1, tag="La")))
    gateway.submit(PlaceOrder("b", market(Side.BUY, 1, tag="Lb")))
    gateway.submit_urgent(ReconcilePositions("urgent-1"))
    gateway.submit_urgent(ReconcileHoldings("urgent-2"))
    assert gateway.in_flight.intent_id == "blocker"
    assert gateway.queue_depth == 4
    paper.gate.set()
    order = [r.request.intent_id for r in results.take(5)]
    assert order == ["blocker", "urgent-1", "urgent-2", "a", "b"]
    assert gateway.queue_depth == 0


def test_stop_drains_accepted_requests_then_refuses_new_ones(clock, make_gateway, results):
    paper = gated(clock)
    gateway = make_gateway(paper)
    gateway.submit(PlaceOrder("blocker", market(Side.BUY, 1, tag="BLOCK")))
    assert paper.entered.wait(HANG_GUARD_S)
    gateway.submit(PlaceOrder("a", market(Side.BUY, 1, tag="La")))
    paper.gate.set()
    assert gateway.stop() is True
    delivered = results.take(2)
    assert all(isinstance(r, Done) for r in delivered)
    assert [o.tag for o in paper.orders()] == ["BLOCK", "La"]
    with pytest.raises(GatewayStopped):
        gateway.submit(ReconcileOrders("late"))
    with pytest.raises(GatewayStopped):
        gateway.submit_urgent(ReconcileOrders("late"))
    assert gateway.status().running is False


def test_stop_without_drain_reports_queued_requests_unsent(clock, make_gateway, results):
    paper = gated(clock)
    gateway = make_gateway(paper)
    gateway.submit(PlaceOrder("blocker", market(Side.BUY, 1, tag="BLOCK")))
    assert paper.entered.wait(HANG_GUARD_S)
    gateway.submit(PlaceOrder("a", market(Side.BUY, 1, tag="La")))
    gateway.submit(CancelOrder("b", "no-such-order"))
    # The thread is provably inside the blocked call, so a zero timeout cannot see it end.
    assert gateway.stop(0, drain=False) is False
    paper.gate.set()
    assert gateway.stop() is True
    blocker, a, b = results.take(3)
    assert isinstance(blocker, Done)  # the call in flight is finished and reported
    for abandoned in (a, b):
        assert isinstance(abandoned, Failed) and isinstance(abandoned.error, GatewayStopped)
        assert abandoned.ambiguous is False
    assert [o.tag for o in paper.orders()] == ["BLOCK"]


def test_a_timed_out_drain_abandons_the_rest(clock, make_gateway, results):
    paper = gated(clock)
    gateway = make_gateway(paper)
    gateway.submit(PlaceOrder("blocker", market(Side.BUY, 1, tag="BLOCK")))
    assert paper.entered.wait(HANG_GUARD_S)
    gateway.submit(PlaceOrder("a", market(Side.BUY, 1, tag="La")))
    assert gateway.stop(0) is False
    paper.gate.set()
    assert gateway.stop() is True
    _, a = results.take(2)
    assert isinstance(a, Failed) and isinstance(a.error, GatewayStopped)


def test_requests_submitted_before_start_wait_for_it(broker, make_gateway, results):
    gateway = make_gateway(broker, start=False)
    gateway.submit(ReconcileOrders("early"))
    assert gateway.queue_depth == 1 and results.waiting == 0
    gateway.start()
    assert isinstance(results.next(), Done)


def test_stopping_a_gateway_never_started_reports_everything_unsent(broker, make_gateway, results):
    gateway = make_gateway(broker, start=False)
    gateway.submit(PlaceOrder("a", market(Side.BUY, 1, tag="La")))
    assert gateway.stop() is True
    [result] = results.take(1)
    assert isinstance(result, Failed) and isinstance(result.error, GatewayStopped)
    assert broker.orders() == []
    with pytest.raises(RuntimeError):
        gateway.start()


def test_a_maybe_applied_placement_is_ambiguous_and_never_retried(clock, make_gateway, results):
    paper = gated(clock, FaultyBroker)
    paper.raises = NetworkUnavailable("read timed out", maybe_applied=True)
    gateway = make_gateway(paper)
    gateway.submit(PlaceOrder("leg-1", market(Side.BUY, 1, tag="Lamb")))
    result = results.next()
    assert isinstance(result, Failed) and result.ambiguous is True
    assert result.error is paper.raises
    assert paper.placements == 1


def test_an_unsent_network_failure_is_not_ambiguous(clock, make_gateway, results):
    paper = gated(clock, FaultyBroker)
    paper.raises = NetworkUnavailable("connection refused", maybe_applied=False)
    gateway = make_gateway(paper)
    gateway.submit(PlaceOrder("leg-1", market(Side.BUY, 1, tag="Lref")))
    result = results.next()
    assert isinstance(result, Failed) and result.ambiguous is False


def test_a_failed_read_is_never_ambiguous(clock, make_gateway, results):
    paper = gated(clock, FaultyBroker)
    paper.raises = NetworkUnavailable("read timed out", maybe_applied=True)
    gateway = make_gateway(paper)
    gateway.submit(ReconcilePositions("recon"))
    result = results.next()
    assert isinstance(result, Failed) and result.ambiguous is False


def test_an_unexpected_exception_is_wrapped_logged_and_the_gateway_goes_on(
    clock, make_gateway, results, caplog
):
    paper = gated(clock, FaultyBroker)
    paper.raises = KeyError("average_price")
    gateway = make_gateway(paper)
    with caplog.at_level(logging.ERROR, logger="Webapp.execution.gateway"):
        gateway.submit(PlaceOrder("leg-1", market(Side.BUY, 1, tag="Lbug")))
        gateway.submit(ReconcilePositions("recon"))
        placed, read = results.take(2)
    assert isinstance(placed, Failed) and isinstance(placed.error, UnexpectedFailure)
    assert "KeyError" in placed.error.message and placed.error.original is paper.raises
    assert placed.ambiguous is True  # a write that blew up may have gone out
    assert isinstance(read, Failed) and read.ambiguous is False
    assert [r.exc_info is not None for r in caplog.records] == [True, True]
    paper.raises = None
    gateway.submit(ReconcilePositions("again"))
    assert isinstance(results.next(), Done)
    status = gateway.status()
    assert (status.done, status.failed) == (1, 2)


def test_order_modify_cancel_and_lookup_by_tag(broker, make_gateway, results):
    gateway = make_gateway(broker)
    gateway.submit(PlaceOrder("leg-1", limit(Side.BUY, 2, 990.0, tag="Llim")))
    placed = results.next()
    order_id = placed.value.order_id
    assert placed.value.state is OrderState.OPEN
    gateway.submit(ModifyOrder("leg-1", order_id, price=995.0))
    gateway.submit(FindOrderByTag("leg-1", "Llim"))
    gateway.submit(CancelOrder("leg-1", order_id))
    gateway.submit(CancelOrder("leg-1", order_id))  # twice: the second is refused
    modified, found, cancelled, again = results.take(4)
    assert isinstance(modified, Done) and isinstance(cancelled, Done)
    assert found.value.order_id == order_id and found.value.price == 995.0
    assert isinstance(again, Failed) and isinstance(again.error, InputRejected)
    assert broker.orders()[0].state is OrderState.CANCELLED


def test_gtt_place_modify_delete_and_reconcile(broker, make_gateway, results):
    gateway = make_gateway(broker)
    gateway.submit(PlaceOrder("leg-1", market(Side.BUY, 3, tag="Lgtt")))
    assert isinstance(results.next(), Done)
    gtt = GttRequest(SYMBOL, GttType.SINGLE, (975.0,), (970.1,), 1000.0, 3)
    gateway.submit(PlaceGtt("leg-1", gtt))
    gtt_id = results.next().value
    assert isinstance(gtt_id, int)
    raised = GttRequest(SYMBOL, GttType.SINGLE, (980.0,), (975.1,), 1000.0, 3)
    gateway.submit(ModifyGtt("leg-1", gtt_id, raised))
    gateway.submit(ReconcileGtts("recon"))
    gateway.submit(ReconcilePositions("recon"))  # today's buy: a position, as on Kite
    gateway.submit(DeleteGtt("leg-1", gtt_id))
    modified, gtts, positions, deleted = results.take(4)
    assert isinstance(modified, Done)
    assert [(g.gtt_id, g.triggers) for g in gtts.value] == [(gtt_id, (980.0,))]
    assert [(p.symbol, p.quantity) for p in positions.value] == [(SYMBOL, 3)]
    assert deleted.value is GttState.ACTIVE


def test_submit_refuses_what_is_not_a_request(broker, make_gateway):
    gateway = make_gateway(broker)
    with pytest.raises(TypeError):
        gateway.submit(OrderRequest(SYMBOL, Side.BUY, 1, OrderType.MARKET, "Lraw"))


def test_a_deliver_that_raises_is_logged_and_later_results_still_flow(broker, clock, caplog):
    delivered = Results()
    calls = {"n": 0}

    def deliver(result: Result) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("engine queue closed")
        delivered(result)

    gateway = OrderGateway(broker, deliver, clock=clock)
    gateway.start()
    try:
        with caplog.at_level(logging.ERROR, logger="Webapp.execution.gateway"):
            gateway.submit(ReconcileOrders("lost"))
            gateway.submit(ReconcileOrders("kept"))
            assert delivered.next().request.intent_id == "kept"
        assert "could not deliver" in caplog.text
    finally:
        gateway.stop()
