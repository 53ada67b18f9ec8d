"""Running a Trader without threads: broker calls execute at once, in a deterministic order.

Backtests and scenario tests use this instead of the engine thread and the gateway
thread. Every broker call the trader submits is executed with the gateway's own
`execute` (same error mapping), and its result, like every order update the broker
emits meanwhile, is handled right after the event that caused it, first in first out:
the same sequence the threaded engine sees when calls are instant.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from Webapp.broker.base import Broker, OrderUpdate
from Webapp.execution.clock import Clock
from Webapp.execution.commands import Command
from Webapp.execution.gateway import Done, Failed, GatewayRequest, OrderGateway
from Webapp.execution.trader import Trader


class InlineGateway:
    """The trader's `submit`: queue calls here; the driver runs them in order."""

    def __init__(self, broker: Broker, clock: Clock) -> None:
        self._gateway = OrderGateway(broker, lambda _r: None, clock=clock, name="inline-gateway")
        self.urgent: deque[GatewayRequest] = deque()  # ahead of `calls`, FIFO among themselves
        self.calls: deque[GatewayRequest] = deque()
        self.sent: list[GatewayRequest] = []  # every call ever executed, for tests

    def send(self, request: GatewayRequest, urgent: bool = False) -> None:
        (self.urgent if urgent else self.calls).append(request)

    @property
    def pending(self) -> bool:
        return bool(self.urgent or self.calls)

    def run_next(self) -> Done | Failed:
        request = (self.urgent or self.calls).popleft()
        self.sent.append(request)
        return self._gateway.execute(request)


class InlineDriver:
    """Feeds a Trader prices, timer ticks and commands, and settles everything they cause."""

    def __init__(self, trader: Trader, gateway: InlineGateway, broker: Broker) -> None:
        self.trader = trader
        self.gateway = gateway
        self.events: deque[object] = deque()
        broker.on_order_update(self.events.append)

    def settle(self) -> None:
        """Handle queued events and run queued calls until nothing is left."""
        while self.events or self.gateway.pending:
            if self.events:
                event = self.events.popleft()
                if isinstance(event, OrderUpdate):
                    self.trader.on_order_update(event)
                else:
                    assert isinstance(event, Done | Failed)
                    self.trader.on_result(event)
            else:
                self.events.append(self.gateway.run_next())

    def price(self, symbol: str, ltp: float, at: datetime | None = None) -> None:
        self.trader.on_price(symbol, ltp, at)
        self.settle()

    def timer(self, at: datetime | None = None) -> None:
        self.trader.on_timer(at)
        self.settle()

    def command(self, command: Command) -> None:
        self.trader.on_command(command)
        self.settle()
