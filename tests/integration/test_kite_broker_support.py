"""Fixtures and helpers shared by the KiteBroker integration tests (kitesim, fake clock, bus)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import FakeClock
from tests.kitesim.rest import KiteRestSim
from Webapp.broker.base import BrokerStatus, GttRequest, GttType, OrderRequest, OrderType, Side
from Webapp.broker.kite import KiteBroker
from Webapp.event_bus import EventBus


class BrokerEvents:
    """BrokerStatus payloads published on the bus topic "broker"."""

    def __init__(self, bus: EventBus) -> None:
        self.seen: list[BrokerStatus] = []
        bus.subscribe("broker", lambda _topic, status: self.seen.append(status))

    @property
    def circuits(self) -> list[str]:
        return [s.circuit for s in self.seen]

    @property
    def token_validity(self) -> list[bool]:
        return [s.token_valid for s in self.seen]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock) -> Iterator[KiteRestSim]:
    with KiteRestSim(clock=clock) as sim:
        sim.set_price("INFY", 1000.0)
        sim.set_price("TCS", 3500.0)
        sim.add_holding("INFY", 10, 950.0)
        yield sim


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def events(bus) -> BrokerEvents:
    return BrokerEvents(bus)


@pytest.fixture
def make_broker(sim, clock, bus) -> Iterator:
    made: list[KiteBroker] = []

    def make(**kw) -> KiteBroker:
        kw.setdefault("timeout", 5.0)
        broker = KiteBroker(
            sim.api_key, sim.access_token, root=sim.url, clock=clock, sleep=clock.sleep, bus=bus,
            **kw,
        )  # fmt: skip
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def broker(make_broker) -> KiteBroker:
    return make_broker()


def buy(tag="L1", quantity=3, order_type=OrderType.MARKET, price=None, symbol="INFY"):
    return OrderRequest(symbol, Side.BUY, quantity, order_type, tag, price)


def sell(tag="S1", quantity=3, order_type=OrderType.MARKET, price=None, symbol="INFY"):
    return OrderRequest(symbol, Side.SELL, quantity, order_type, tag, price)


def oco(stop=975.0, target=1050.0, last_price=1000.0, quantity=3):
    return GttRequest(
        "INFY", GttType.TWO_LEG, (stop, target), (970.1, 1044.75), last_price, quantity
    )


def single(stop=975.0, last_price=1000.0, quantity=3):
    return GttRequest("INFY", GttType.SINGLE, (stop,), (970.1,), last_price, quantity)
