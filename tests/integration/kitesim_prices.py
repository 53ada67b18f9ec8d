"""kitesim's REST exchange with a price switch, for live rigs (and crash children) to trade on.

A LiveRig (crash_child.py) moves kitesim's prices with a POST to PRICE_ROUTE, as a trade at
that price on the exchange would: GTTs fire and orders fill there, not in the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import request

from tests.integration.crash_child import KiteSimAddress
from tests.kitesim.rest import KiteRestSim

PRICE_ROUTE = "/_test/price"


@contextmanager
def priced_kitesim() -> Iterator[KiteRestSim]:
    sim = KiteRestSim()

    def trade_at():
        body = request.get_json()
        sim.set_price(body["symbol"], float(body["price"]))
        return {"status": "success"}

    sim.app.add_url_rule(PRICE_ROUTE, "test-price", trade_at, methods=["POST"])
    with sim:
        yield sim


def address_of(sim: KiteRestSim) -> KiteSimAddress:
    """Where a LiveRig finds this kitesim: Kite's REST root, its login, its price switch."""
    return KiteSimAddress(sim.url, sim.api_key, sim.access_token, sim.url + PRICE_ROUTE)
