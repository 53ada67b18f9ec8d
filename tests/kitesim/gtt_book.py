"""kitesim's GTT book: Kite's GTT rules on placement and modification, and when a GTT fires.

Pure bookkeeping like the order book; `Exchange` places the order a GTT fires.
Kite's rules mirrored here (all refused with InputException, HTTP 400):
`last_price` is required; a two-leg GTT's last price lies strictly between its
triggers; every trigger is more than 0.25% away from the last price; at most
250 GTTs are active; each order is a LIMIT with a quantity > 0 and a price on
the tick. Modifying or deleting a GTT that is no longer active is refused with
"Trigger is not active.".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.kitesim.order_book import input_error, kite_time, on_tick
from Webapp.market.instruments import InstrumentMap, UnknownInstrument

SINGLE, TWO_LEG = "single", "two-leg"
MAX_ACTIVE_GTTS = 250
MIN_TRIGGER_DISTANCE_PCT = 0.25
NOT_ACTIVE = "Trigger is not active."
ACTIVE, TRIGGERED, DELETED = "active", "triggered", "deleted"


@dataclass
class SimGtt:
    """One GTT; `condition` and `orders` are Kite's dicts, `orders[i]["result"]` set on firing."""

    id: int
    user_id: str
    type: str
    condition: dict[str, Any]
    orders: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    status: str = ACTIVE
    fired_leg: int | None = None
    history: list[str] = field(default_factory=list)

    def as_kite(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "parent_trigger": None,
            "type": self.type,
            "created_at": kite_time(self.created_at),
            "updated_at": kite_time(self.updated_at),
            "expires_at": kite_time(self.created_at + timedelta(days=365)),
            "status": self.status,
            "condition": dict(self.condition),
            "orders": [dict(o) for o in self.orders],
            "meta": None,
        }

    def leg_crossed(self, last_price: float) -> int | None:
        """Which order fires at `last_price`: 0 (lower trigger), 1 (upper), or None.

        A single-leg GTT fires when the price reaches its trigger from the side the
        last price was on when it was placed (a sell stop below, a buy above).
        """
        triggers = self.condition["trigger_values"]
        if self.type == SINGLE:
            trigger = triggers[0]
            below = trigger < self.condition["last_price"]
            crossed = last_price <= trigger if below else last_price >= trigger
            return 0 if crossed else None
        lower, upper = triggers
        if last_price <= lower:
            return 0
        if last_price >= upper:
            return 1
        return None


def parse_gtt(
    form: dict[str, str], instruments: InstrumentMap
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Check a GTT form (condition and orders arrive as JSON strings) by Kite's rules.

    Returns (type, condition, orders) with the instrument token filled in; the
    active-count rule is the book's, as it depends on the other GTTs.
    """
    gtt_type = form.get("type", "")
    if gtt_type not in (SINGLE, TWO_LEG):
        raise input_error("Invalid `type`. Should be `single` or `two-leg`.")
    try:
        condition = json.loads(form.get("condition") or "")
        orders = json.loads(form.get("orders") or "")
    except ValueError:
        raise input_error("Invalid `condition` or `orders`: not JSON.") from None
    if not isinstance(condition, dict) or not isinstance(orders, list):
        raise input_error("Invalid `condition` or `orders`.")
    try:
        instrument = instruments.instrument(
            str(condition.get("tradingsymbol")), str(condition.get("exchange"))
        )
    except UnknownInstrument:
        raise input_error("Invalid `tradingsymbol` or `exchange` in `condition`.") from None
    last_price = condition.get("last_price")
    if not isinstance(last_price, int | float) or isinstance(last_price, bool) or last_price <= 0:
        raise input_error("Invalid `last_price`. The last price of the instrument is required.")
    triggers = condition.get("trigger_values")
    expected = 1 if gtt_type == SINGLE else 2
    if not isinstance(triggers, list) or len(triggers) != expected:
        raise input_error(f"Invalid `trigger_values`. A {gtt_type} GTT needs {expected}.")
    if not all(isinstance(t, int | float) and t > 0 for t in triggers):
        raise input_error("Invalid `trigger_values`.")
    triggers = [float(t) for t in triggers]
    if gtt_type == TWO_LEG and not triggers[0] < last_price < triggers[1]:
        raise input_error(
            "Invalid `trigger_values`. The last price must lie between the two trigger values."
        )
    for trigger in triggers:
        if not on_tick(trigger, instrument.tick_size):
            raise input_error(
                f"Tick size for this script is {instrument.tick_size:g}. "
                "Kindly enter trigger price in the multiple of tick size for this script"
            )
        if abs(trigger - last_price) / last_price * 100 <= MIN_TRIGGER_DISTANCE_PCT:
            raise input_error("Trigger price was too close to the last price")
    if len(orders) != expected:
        raise input_error(f"Invalid `orders`. A {gtt_type} GTT needs {expected}.")
    parsed = [
        _gtt_order(o, instrument.exchange, instrument.symbol, instrument.tick_size) for o in orders
    ]
    condition = {
        "exchange": instrument.exchange,
        "tradingsymbol": instrument.symbol,
        "instrument_token": instrument.token,
        "trigger_values": triggers,
        "last_price": float(last_price),
    }
    return gtt_type, condition, parsed


def _gtt_order(raw: Any, exchange: str, symbol: str, tick_size: float) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise input_error("Invalid `orders`.")
    if raw.get("transaction_type") not in ("BUY", "SELL"):
        raise input_error("Invalid `transaction_type` in `orders`.")
    if raw.get("order_type") != "LIMIT":
        raise input_error("Invalid `order_type` in `orders`. GTT orders are LIMIT orders.")
    if raw.get("product") not in ("CNC", "MIS", "NRML"):
        raise input_error("Invalid `product` in `orders`.")
    quantity = raw.get("quantity")
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise input_error("Invalid `quantity` in `orders`.")
    price = raw.get("price")
    if not isinstance(price, int | float) or price <= 0:
        raise input_error("Invalid `price` in `orders`.")
    if not on_tick(float(price), tick_size):
        raise input_error(
            f"Tick size for this script is {tick_size:g}. "
            "Kindly enter price in the multiple of tick size for this script"
        )
    return {
        "exchange": exchange,
        "tradingsymbol": symbol,
        "product": raw["product"],
        "order_type": "LIMIT",
        "transaction_type": raw["transaction_type"],
        "quantity": quantity,
        "price": float(price),
        "result": None,
    }


class GttBook:
    """Every GTT of the account by id; ids start at `first_id` like Kite's integer ids."""

    def __init__(self, user_id: str, first_id: int = 100_001) -> None:
        self.user_id = user_id
        self._next_id = first_id
        self.gtts: dict[int, SimGtt] = {}

    def active_count(self) -> int:
        return sum(1 for g in self.gtts.values() if g.status == ACTIVE)

    def get(self, gtt_id: int) -> SimGtt:
        gtt = self.gtts.get(gtt_id)
        if gtt is None:
            raise input_error("Invalid trigger ID. The GTT does not exist.")
        return gtt

    def place(self, form: dict[str, str], instruments: InstrumentMap, now: datetime) -> SimGtt:
        gtt_type, condition, orders = parse_gtt(form, instruments)
        if self.active_count() >= MAX_ACTIVE_GTTS:
            raise input_error(
                f"You can have at most {MAX_ACTIVE_GTTS} active GTTs. Delete some to place more."
            )
        gtt = SimGtt(self._next_id, self.user_id, gtt_type, condition, orders, now, now)
        gtt.history.append(ACTIVE)
        self._next_id += 1
        self.gtts[gtt.id] = gtt
        return gtt

    def modify(
        self, gtt_id: int, form: dict[str, str], instruments: InstrumentMap, now: datetime
    ) -> SimGtt:
        gtt = self.get(gtt_id)
        if gtt.status != ACTIVE:
            raise input_error(NOT_ACTIVE)
        gtt_type, condition, orders = parse_gtt(form, instruments)
        if condition["instrument_token"] != gtt.condition["instrument_token"]:
            raise input_error("Invalid `tradingsymbol`. A GTT's instrument cannot change.")
        gtt.type, gtt.condition, gtt.orders, gtt.updated_at = gtt_type, condition, orders, now
        return gtt

    def delete(self, gtt_id: int, now: datetime) -> SimGtt:
        gtt = self.get(gtt_id)
        if gtt.status != ACTIVE:
            raise input_error(NOT_ACTIVE)
        gtt.status, gtt.updated_at = DELETED, now
        gtt.history.append(DELETED)
        return gtt

    def crossed(self, token: int, last_price: float) -> list[tuple[SimGtt, int]]:
        """Active GTTs on `token` that `last_price` fires, with the leg each fires."""
        fired = []
        for gtt in self.gtts.values():
            if gtt.status == ACTIVE and gtt.condition["instrument_token"] == token:
                leg = gtt.leg_crossed(last_price)
                if leg is not None:
                    fired.append((gtt, leg))
        return fired

    def mark_triggered(
        self, gtt: SimGtt, leg: int, last_price: float, now: datetime, order_result: dict
    ) -> None:
        gtt.status, gtt.updated_at, gtt.fired_leg = TRIGGERED, now, leg
        gtt.history.append(TRIGGERED)
        order = gtt.orders[leg]
        gtt.orders[leg] = {
            **order,
            "result": {
                "account_id": self.user_id,
                "exchange": order["exchange"],
                "tradingsymbol": order["tradingsymbol"],
                "validity": "DAY",
                "product": order["product"],
                "order_type": order["order_type"],
                "transaction_type": order["transaction_type"],
                "quantity": order["quantity"],
                "price": order["price"],
                "meta": "",
                "timestamp": kite_time(now),
                "triggered_at": last_price,
                "order_result": order_result,
            },
        }
