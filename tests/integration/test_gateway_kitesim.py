"""The order gateway over KiteBroker and kitesim: a lost placement reply is found, never resent."""

from __future__ import annotations

import queue

import pytest

from tests.integration import test_kite_broker_support as support
from tests.integration.test_kite_broker_support import buy
from Webapp.broker.base import NetworkUnavailable
from Webapp.execution.clock import WallClock
from Webapp.execution.gateway import Done, Failed, OrderGateway, PlaceOrder

# The shared fixtures, bound here so that pytest finds them in this module.
clock, sim, bus, make_broker = support.clock, support.sim, support.bus, support.make_broker

# Only a guard against a hung test: each result arrives as soon as kitesim answers.
HANG_GUARD_S = 30


@pytest.fixture
def gateway_results(make_broker):
    results: queue.Queue = queue.Queue()
    gateway = OrderGateway(make_broker(timeout=0.5), results.put, clock=WallClock())
    gateway.start()
    yield gateway, results
    gateway.stop()


def test_a_lost_placement_reply_is_delivered_done_after_the_tag_lookup(gateway_results, sim):
    gateway, results = gateway_results
    sim.fail_next("order.place", "lost_reply", how="reset")
    gateway.submit(PlaceOrder("leg-1", buy(tag="Lgwlost")))
    result = results.get(timeout=HANG_GUARD_S)
    assert isinstance(result, Done)
    [placed] = sim.orders_placed()  # exactly one order in the exchange's book
    assert (result.value.order_id, result.value.tag) == (placed["order_id"], "Lgwlost")
    assert len(sim.requests_to("order.place")) == 1


def test_a_placement_that_cannot_be_found_is_delivered_ambiguous(gateway_results, sim):
    gateway, results = gateway_results
    sim.fail_next("order.place", "lost_reply", how="reset")
    sim.fail_next("orders", "503", times=6)
    gateway.submit(PlaceOrder("leg-1", buy(tag="Lgwblind")))
    result = results.get(timeout=HANG_GUARD_S)
    assert isinstance(result, Failed) and result.ambiguous is True
    assert isinstance(result.error, NetworkUnavailable)
    assert len(sim.orders_placed()) == 1  # it landed; the engine reconciles it by tag
    assert len(sim.requests_to("order.place")) == 1
