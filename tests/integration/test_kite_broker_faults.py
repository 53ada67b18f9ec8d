"""Each kitesim fault on each order and GTT operation, and on reads: error, retry, no duplicate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.integration import test_kite_broker_support as support
from tests.integration.test_kite_broker_support import buy, oco, sell
from tests.kitesim.rest import KiteRestSim
from Webapp.broker.base import (
    GttState,
    NetworkUnavailable,
    OrderType,
    TokenExpired,
)
from Webapp.broker.kite import KiteBroker

# The shared fixtures, bound here so that pytest finds them in this module.
clock, sim, bus, make_broker = support.clock, support.sim, support.bus, support.make_broker

CLIENT_TIMEOUT_S = 0.5
HELD_S = 1.5  # a "timeout" fault holds the reply this long, well past the client's timeout
RETRIED = ("429", "500", "502", "503", "timeout", "lost_reply", "lost_reply_504")
FAULTS = (*RETRIED, "timeout_applied", "token", "latency")


def fault_kwargs(fault: str) -> tuple[str, dict]:
    """kitesim's fault name and arguments for one of FAULTS."""
    return {
        "timeout": ("timeout", {"seconds": HELD_S}),
        "timeout_applied": ("timeout", {"seconds": HELD_S, "applied": True}),
        "lost_reply": ("lost_reply", {"how": "reset"}),
        "lost_reply_504": ("lost_reply", {"how": "504"}),
        "latency": ("latency", {"seconds": 0.05}),
    }.get(fault, (fault, {}))


@pytest.fixture
def fault_broker(make_broker) -> KiteBroker:
    return make_broker(timeout=CLIENT_TIMEOUT_S)


@dataclass(frozen=True)
class Operation:
    """One broker operation: its kitesim route, what to set up, what to do, what must hold after."""

    route: str
    act: Callable[[KiteBroker, dict], object]
    done: Callable[[KiteRestSim, dict, object], bool]
    setup: Callable[[KiteBroker, dict], None] = lambda broker, state: None


def _resting(broker: KiteBroker, state: dict) -> None:
    state["order_id"] = broker.place_order(sell(order_type=OrderType.LIMIT, price=1100.0)).order_id


def _gtt(broker: KiteBroker, state: dict) -> None:
    state["gtt_id"] = broker.place_gtt(oco())


def _order(sim: KiteRestSim, state: dict) -> dict:
    return next(o for o in sim.order_book if o["order_id"] == state["order_id"])


def _gtt_row(sim: KiteRestSim, state: dict) -> dict:
    return next(g for g in sim.gtt_book if g["id"] == state["gtt_id"])


WRITES = {
    "modify_order": Operation(
        "order.modify",
        lambda b, s: b.modify_order(s["order_id"], price=1105.0),
        lambda sim, s, result: _order(sim, s)["price"] == 1105.0,
        _resting,
    ),
    "cancel_order": Operation(
        "order.cancel",
        lambda b, s: b.cancel_order(s["order_id"]),
        lambda sim, s, result: _order(sim, s)["status"] == "CANCELLED",
        _resting,
    ),
    "modify_gtt": Operation(
        "gtt.modify",
        lambda b, s: b.modify_gtt(s["gtt_id"], oco(stop=980.0)),
        lambda sim, s, result: _gtt_row(sim, s)["condition"]["trigger_values"] == [980.0, 1050.0],
        _gtt,
    ),
    "delete_gtt": Operation(
        "gtt.delete",
        lambda b, s: b.delete_gtt(s["gtt_id"]),
        lambda sim, s, result: (
            result is GttState.ACTIVE and _gtt_row(sim, s)["status"] == "deleted"
        ),
        _gtt,
    ),
}
READS = {
    "orders": Operation("orders", lambda b, s: b.orders(), lambda sim, s, r: len(r) == 1, _resting),
    "order_history": Operation(
        "order.info",
        lambda b, s: b.order_history(s["order_id"]),
        lambda sim, s, r: r[-1].order_id == s["order_id"],
        _resting,
    ),
    "positions": Operation("positions", lambda b, s: b.positions(), lambda sim, s, r: r == []),
    "holdings": Operation(
        "holdings", lambda b, s: b.holdings(), lambda sim, s, r: r[0].symbol == "INFY"
    ),
    "margins": Operation("margins", lambda b, s: b.margins(), lambda sim, s, r: r.net > 0),
    "ltp": Operation(
        "quote.ltp", lambda b, s: b.ltp(["INFY"]), lambda sim, s, r: r == {"INFY": 1000.0}
    ),
    "gtts": Operation("gtt", lambda b, s: b.gtts(), lambda sim, s, r: len(r) == 1, _gtt),
    "get_gtt": Operation(
        "gtt.info",
        lambda b, s: b.get_gtt(s["gtt_id"]),
        lambda sim, s, r: r.gtt_id == s["gtt_id"],
        _gtt,
    ),
}
REPEATABLE = {**WRITES, **READS}


def inject(sim: KiteRestSim, route: str, fault: str) -> None:
    kind, kwargs = fault_kwargs(fault)
    sim.fail_next(route, kind, **kwargs)


# --- reads, modifications, cancels and deletes: retried ------------------------------------------


READ_FAULTS = ("429", "503", "timeout", "lost_reply")  # one of each kind; writes get them all
CASES = [(name, fault) for name in WRITES for fault in (*RETRIED, "timeout_applied", "latency")]
CASES += [(name, fault) for name in READS for fault in READ_FAULTS]


@pytest.mark.parametrize(("name", "fault"), CASES)
def test_repeatable_operations_are_retried_after_a_transient_fault(
    fault_broker, sim, clock, name, fault
):
    operation = REPEATABLE[name]
    state: dict = {}
    operation.setup(fault_broker, state)
    inject(sim, operation.route, fault)
    result = operation.act(fault_broker, state)
    assert operation.done(sim, state, result)
    answered = [r for r in sim.requests_to(operation.route) if r.status is not None]
    if fault == "latency":
        assert clock.sleeps == [] and len(answered) == 1
    else:
        assert len(answered) >= 1  # the retry got through (a held reply may still be pending)
        assert clock.sleeps, "retried after a backoff"
    if fault == "429":
        assert max(clock.sleeps) >= 1.0 and len(sim.requests_to(operation.route)) == 2
    if fault in ("500", "502", "503", "lost_reply_504"):
        assert len(sim.requests_to(operation.route)) == 2
    assert fault_broker.status().circuit == "closed"


@pytest.mark.parametrize("name", list(REPEATABLE))
def test_a_token_fault_is_not_retried_and_pauses_the_broker(fault_broker, sim, name):
    operation = REPEATABLE[name]
    state: dict = {}
    operation.setup(fault_broker, state)
    inject(sim, operation.route, "token")
    with pytest.raises(TokenExpired, match=name):
        operation.act(fault_broker, state)
    sent = len(sim.requests)
    assert len(sim.requests_to(operation.route)) == 1
    with pytest.raises(TokenExpired):
        operation.act(fault_broker, state)
    assert len(sim.requests) == sent
    fault_broker.set_access_token(sim.access_token)
    assert operation.done(sim, state, operation.act(fault_broker, state))


@pytest.mark.parametrize("name", list(WRITES))
def test_retries_are_bounded(make_broker, sim, clock, name):
    broker = make_broker(max_attempts=3, failure_threshold=10)
    operation = WRITES[name]
    state: dict = {}
    operation.setup(broker, state)
    sim.fail_next(operation.route, "503", times=5)
    with pytest.raises(NetworkUnavailable, match=name):
        operation.act(broker, state)
    assert len(sim.requests_to(operation.route)) == 3
    assert clock.sleeps == [0.5, 1.0]  # exponential backoff between the three sends


# --- order placement: never blindly resent -------------------------------------------------


@pytest.mark.parametrize("fault", ["lost_reply", "lost_reply_504", "timeout_applied"])
def test_a_lost_reply_on_place_is_found_by_tag_and_never_duplicated(fault_broker, sim, fault):
    inject(sim, "order.place", fault)
    order = fault_broker.place_order(buy(tag="Llost1"))
    [placed] = sim.orders_placed()
    assert (order.order_id, order.tag) == (placed["order_id"], "Llost1")
    assert len(sim.requests_to("orders")) == 1  # one lookup found it
    answered = [r for r in sim.requests_to("order.place") if r.status is not None]
    assert len(answered) <= 1


@pytest.mark.parametrize("fault", ["timeout", "500", "502", "503"])
def test_an_unapplied_ambiguous_failure_on_place_is_looked_up_not_resent(
    fault_broker, sim, clock, fault
):
    inject(sim, "order.place", fault)
    with pytest.raises(NetworkUnavailable, match="reconcile by tag") as caught:
        fault_broker.place_order(buy(tag="Lamb1"))
    assert caught.value.maybe_applied is True
    assert sim.orders_placed() == []  # no second placement
    assert len(sim.requests_to("orders")) == 2  # a lookup, a wait, a second lookup
    assert fault_broker.lookup_wait_s in clock.sleeps
    if fault != "timeout":
        assert len(sim.requests_to("order.place")) == 1


def test_a_rate_limited_placement_is_resent_after_a_backoff(fault_broker, sim, clock):
    sim.fail_next("order.place", "429")
    order = fault_broker.place_order(buy(tag="L429"))
    assert [o["order_id"] for o in sim.orders_placed()] == [order.order_id]
    assert len(sim.requests_to("order.place")) == 2 and max(clock.sleeps) >= 1.0


def test_a_placement_whose_lookup_also_fails_stays_ambiguous(fault_broker, sim):
    sim.fail_next("order.place", "lost_reply")
    sim.fail_next("orders", "503", times=6)
    with pytest.raises(NetworkUnavailable, match="looking the order up") as caught:
        fault_broker.place_order(buy(tag="Lblind"))
    assert caught.value.maybe_applied is True
    assert len(sim.orders_placed()) == 1  # it did land; the engine reconciles it by tag


@pytest.mark.parametrize("fault", ["token", "latency"])
def test_place_order_token_and_latency(fault_broker, sim, fault):
    inject(sim, "order.place", fault)
    if fault == "token":
        with pytest.raises(TokenExpired):
            fault_broker.place_order(buy())
        assert sim.orders_placed() == [] and len(sim.requests) == 1
    else:
        fault_broker.place_order(buy())
        assert len(sim.orders_placed()) == 1


# --- GTT placement: look before placing again ----------------------------------------------


def active_gtts(sim: KiteRestSim) -> list[dict]:
    return [g for g in sim.gtt_book if g["status"] == "active"]


@pytest.mark.parametrize("fault", ["lost_reply", "lost_reply_504", "timeout_applied"])
def test_a_lost_reply_on_place_gtt_finds_the_gtt_and_places_no_second(fault_broker, sim, fault):
    inject(sim, "gtt.place", fault)
    gtt_id = fault_broker.place_gtt(oco())
    [gtt] = active_gtts(sim)
    assert gtt["id"] == gtt_id
    assert len(sim.requests_to("gtt")) == 1


@pytest.mark.parametrize("fault", ["timeout", "500", "502", "503"])
def test_an_unapplied_failure_on_place_gtt_is_placed_again_after_looking(fault_broker, sim, fault):
    inject(sim, "gtt.place", fault)
    gtt_id = fault_broker.place_gtt(oco())
    [gtt] = active_gtts(sim)
    assert gtt["id"] == gtt_id
    assert len(sim.requests_to("gtt")) == 2  # looked twice before placing again


def test_a_gtt_that_cannot_be_placed_after_looking_raises_ambiguous(fault_broker, sim):
    sim.fail_next("gtt.place", "503", times=2)
    with pytest.raises(NetworkUnavailable, match="no matching active GTT") as caught:
        fault_broker.place_gtt(oco())
    assert caught.value.maybe_applied is True and active_gtts(sim) == []
    assert len(sim.requests_to("gtt.place")) == 2  # gtt_place_attempts


def test_an_existing_gtt_with_other_triggers_is_not_mistaken_for_the_lost_one(fault_broker, sim):
    fault_broker.place_gtt(oco(stop=960.0))
    sim.fail_next("gtt.place", "lost_reply")
    gtt_id = fault_broker.place_gtt(oco())
    assert len(active_gtts(sim)) == 2
    assert fault_broker.get_gtt(gtt_id).triggers == (975.0, 1050.0)


@pytest.mark.parametrize("fault", ["429", "token", "latency"])
def test_place_gtt_rate_limit_token_and_latency(fault_broker, sim, fault):
    inject(sim, "gtt.place", fault)
    if fault == "token":
        with pytest.raises(TokenExpired):
            fault_broker.place_gtt(oco())
        assert active_gtts(sim) == [] and len(sim.requests) == 1
        return
    fault_broker.place_gtt(oco())
    assert len(active_gtts(sim)) == 1
    assert len(sim.requests_to("gtt.place")) == (2 if fault == "429" else 1)
