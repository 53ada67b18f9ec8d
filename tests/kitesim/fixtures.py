"""pytest fixtures for kitesim (a plugin of tests/conftest.py): ticker and REST servers per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kiteconnect import KiteConnect

from tests.kitesim.historical import HistoricalSim
from tests.kitesim.rest import KiteRestSim
from tests.kitesim.ticker import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY, TickerSim


@dataclass(frozen=True)
class KiteSim:
    """The running simulator and the login it accepts."""

    ticker: TickerSim
    api_key: str = DEFAULT_API_KEY
    access_token: str = DEFAULT_ACCESS_TOKEN

    @property
    def ticker_url(self) -> str:
        """The `root` for KiteTicker."""
        return self.ticker.url


@pytest.fixture
def kitesim_ticker() -> Iterator[TickerSim]:
    """A started TickerSim (heartbeat every 0.1s so staleness tests stay short); stopped after."""
    sim = TickerSim(heartbeat_interval_s=0.1).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def kitesim(kitesim_ticker: TickerSim) -> KiteSim:
    """kitesim with its ticker running: `.ticker`, and the `.api_key`/`.access_token` it accepts."""
    return KiteSim(kitesim_ticker)


@pytest.fixture
def kite_rest() -> Iterator[HistoricalSim]:
    """A started HistoricalSim on a free local port; stopped after the test."""
    sim = HistoricalSim().start()
    try:
        yield sim
    finally:
        sim.stop()


@dataclass(frozen=True)
class KiteExchange:
    """kitesim's REST server with its ticker attached: prices set on either move the exchange."""

    rest: KiteRestSim
    ticker: TickerSim

    @property
    def api_key(self) -> str:
        return self.rest.api_key

    @property
    def api_secret(self) -> str:
        return self.rest.api_secret

    @property
    def access_token(self) -> str:
        """The newest valid login (it changes when a session is generated)."""
        return self.rest.access_token

    def client(self, access_token: str | None = None, *, timeout: float = 10) -> KiteConnect:
        return self.rest.client(access_token, timeout=timeout)


@pytest.fixture
def kite_exchange() -> Iterator[KiteExchange]:
    """A started KiteRestSim with a started TickerSim (heartbeat 0.1s) attached; stopped after."""
    ticker = TickerSim(heartbeat_interval_s=0.1).start()
    rest = KiteRestSim(ticker=ticker)
    try:
        rest.start()
        yield KiteExchange(rest, ticker)
    finally:
        rest.stop()
        ticker.stop()
