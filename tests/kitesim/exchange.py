"""kitesim's exchange: the order book, GTT book and account, moved by the prices it is told.

Pure and thread-safe, with no HTTP: `KiteRestSim` routes requests here and the
ticker's prices arrive through `set_price`. On each price, in the order
STRATEGY.md gives for the broker side: GTTs the price crosses fire (once each,
placing their LIMIT order), then resting orders fill — MARKET at the price,
BUY LIMIT when the price is at or below the limit and SELL LIMIT at or above
it, both at the limit. Each order change is handed to `on_order_update` with
Kite's order dict, under the exchange's lock so that updates keep their order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.kitesim.gtt_book import GttBook, SimGtt
from tests.kitesim.order_book import (
    CANCEL_PENDING,
    CANCELLED,
    COMPLETE,
    MAX_MODIFICATIONS,
    MODIFY_PENDING,
    MODIFY_VALIDATION_PENDING,
    OPEN,
    OPEN_PENDING,
    PUT_ORDER_REQ_RECEIVED,
    REJECTED,
    TRIGGER_PENDING,
    VALIDATION_PENDING,
    KiteError,
    SimOrder,
    Trade,
    check_prices,
    input_error,
    parse_order_fields,
)
from tests.kitesim.portfolio import Portfolio
from Webapp.market.instruments import Instrument, InstrumentMap, UnknownInstrument

DEFAULT_USER_ID = "KS0001"
DEFAULT_CASH = 1_000_000.0
# Called with Kite's order dict and the status a postback would carry (None: no postback).
OrderUpdateHook = Callable[[dict[str, Any], str | None], None]


@dataclass(frozen=True)
class OrderBehaviour:
    """How the exchange treats one order, set by a fault: reject it, cap its fill, or (the
    order of a firing GTT) fail to place it at all."""

    reject: str | None = None  # status_message of a rejection after acceptance
    partial: int | None = None  # fill this many, then rest OPEN until modified
    fail: str | None = None  # a GTT's order never placed: its order_result's rejection_reason


class Exchange:
    """One account on a simulated NSE; every public method takes the lock."""

    def __init__(
        self,
        instruments: InstrumentMap,
        *,
        user_id: str = DEFAULT_USER_ID,
        cash: float = DEFAULT_CASH,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_order_update: OrderUpdateHook | None = None,
        gtt_order_behaviour: Callable[[], OrderBehaviour | None] = lambda: None,
    ) -> None:
        self.instruments = instruments
        self.user_id = user_id
        self.now = now
        self.on_order_update = on_order_update
        self.gtt_order_behaviour = gtt_order_behaviour
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self.orders: dict[str, SimOrder] = {}
        self.trades: list[Trade] = []
        self.gtt_book = GttBook(user_id)
        self.portfolio = Portfolio(cash)
        self.prices: dict[int, float] = {}
        self._seq = 0

    # --- instruments and prices ----------------------------------------------------

    def instrument(self, symbol_or_token: str | int, exchange: str = "NSE") -> Instrument:
        """By token, `"INFY"` (on `exchange`) or `"NSE:INFY"`."""
        if isinstance(symbol_or_token, int):
            return self.instruments.by_token(symbol_or_token)
        if ":" in symbol_or_token:
            exchange, symbol_or_token = symbol_or_token.split(":", 1)
        return self.instruments.instrument(symbol_or_token, exchange)

    def ltp(self, token: int) -> float | None:
        with self.lock:
            return self.prices.get(token)

    def set_price(self, token: int, last_price: float) -> None:
        """A trade at `last_price`: fire the GTTs it crosses, then fill what it reaches."""
        with self.lock:
            self.prices[token] = last_price
            for gtt, leg in self.gtt_book.crossed(token, last_price):
                self._fire_gtt(gtt, leg, last_price)
            for order in list(self.orders.values()):
                if order.instrument.token == token and not order.is_final:
                    self._match(order, last_price)
            self._changed.notify_all()

    # --- orders --------------------------------------------------------------------

    def place_order(
        self, variety: str, form: dict[str, str], behaviour: OrderBehaviour | None = None
    ) -> SimOrder:
        """Accept or refuse (KiteError) an order; an accepted one may still go REJECTED."""
        with self.lock:
            if variety != "regular":
                raise input_error("Invalid `variety`. kitesim takes regular orders only.")
            instrument = self._instrument_of(form)
            fields = parse_order_fields(form, tick_size=instrument.tick_size)
            now = self.now()
            self._seq += 1
            order = SimOrder(
                order_id=f"{now:%y%m%d}{self._seq:09d}",
                user_id=self.user_id,
                instrument=instrument,
                placed_at=now,
                variety=variety,
                **fields,
            )
            self.orders[order.order_id] = order
            order.move_to(PUT_ORDER_REQ_RECEIVED, now)
            order.move_to(VALIDATION_PENDING, now)
            reason = (behaviour.reject if behaviour else None) or self._rms_refusal(order)
            if reason:
                order.move_to(REJECTED, now, reason)
                self._emit(order, REJECTED)
                return order
            if behaviour is not None and behaviour.partial is not None:
                order.fill_cap = behaviour.partial
            order.move_to(OPEN_PENDING, now)
            order.exchange_order_id = f"11000{self._seq:011d}"
            order.exchange_timestamp = now
            order.move_to(TRIGGER_PENDING if order.order_type in ("SL", "SL-M") else OPEN, now)
            self._emit(order, None)
            last_price = self.prices.get(instrument.token)
            if last_price is not None:
                self._match(order, last_price)
            if order.validity == "IOC" and not order.is_final:
                self._cancel(order, "IOC order cancelled: no more quantity to match.")
            self._changed.notify_all()
            return order

    def modify_order(self, variety: str, order_id: str, form: dict[str, str]) -> SimOrder:
        """Change quantity, price, type or trigger of a resting order (a modify lifts a cap)."""
        with self.lock:
            order = self.order(order_id)
            if order.is_final:
                raise input_error(
                    f"Order cannot be modified as it is already {order.status.lower()}."
                )
            if order.modifications >= MAX_MODIFICATIONS:
                raise input_error("Maximum allowed order modifications exceeded.")
            fields = {
                "order_type": form.get("order_type") or order.order_type,
                "price": _float(form, "price", order.price),
                "trigger_price": _float(form, "trigger_price", order.trigger_price),
            }
            if fields["order_type"] not in ("MARKET", "LIMIT", "SL", "SL-M"):
                raise input_error("Invalid `order_type`.")
            if fields["order_type"] in ("MARKET", "SL-M"):
                fields["price"] = 0.0
            if fields["order_type"] in ("MARKET", "LIMIT"):
                fields["trigger_price"] = 0.0
            check_prices(fields, order.instrument.tick_size)
            quantity = int(_float(form, "quantity", order.quantity))
            if quantity <= order.filled_quantity:
                raise input_error("Invalid `quantity`. It must exceed the filled quantity.")
            now = self.now()
            order.move_to(MODIFY_VALIDATION_PENDING, now)
            order.move_to(MODIFY_PENDING, now)
            order.order_type, order.price = fields["order_type"], fields["price"]
            order.trigger_price, order.quantity = fields["trigger_price"], quantity
            order.validity = form.get("validity") or order.validity
            order.market_protection = _float(form, "market_protection", order.market_protection)
            order.fill_cap = None
            order.modifications += 1
            waiting = order.order_type in ("SL", "SL-M") and order.filled_quantity == 0
            order.move_to(TRIGGER_PENDING if waiting else OPEN, now)
            self._emit(order, "UPDATE")
            last_price = self.prices.get(order.instrument.token)
            if last_price is not None:
                self._match(order, last_price)
            self._changed.notify_all()
            return order

    def cancel_order(self, variety: str, order_id: str) -> SimOrder:
        with self.lock:
            order = self.order(order_id)
            if order.is_final:
                raise input_error(
                    f"Order cannot be cancelled as it is already {order.status.lower()}."
                )
            self._cancel(order, None)
            self._changed.notify_all()
            return order

    def order(self, order_id: str) -> SimOrder:
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                raise input_error("Invalid `order_id`. The order does not exist.")
            return order

    def orders_kite(self) -> list[dict[str, Any]]:
        with self.lock:
            return [o.as_kite() for o in self.orders.values()]

    def order_history(self, order_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(h) for h in self.order(order_id).history]

    def trades_kite(self, order_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            if order_id is not None:
                self.order(order_id)
            return [t.as_kite() for t in self.trades if order_id in (None, t.order.order_id)]

    # --- GTTs ----------------------------------------------------------------------

    def place_gtt(self, form: dict[str, str]) -> SimGtt:
        with self.lock:
            gtt = self.gtt_book.place(form, self.instruments, self.now())
            self._changed.notify_all()
            return gtt

    def modify_gtt(self, gtt_id: int, form: dict[str, str]) -> SimGtt:
        with self.lock:
            gtt = self.gtt_book.modify(gtt_id, form, self.instruments, self.now())
            self._changed.notify_all()
            return gtt

    def delete_gtt(self, gtt_id: int) -> SimGtt:
        with self.lock:
            gtt = self.gtt_book.delete(gtt_id, self.now())
            self._changed.notify_all()
            return gtt

    def gtt_kite(self, gtt_id: int) -> dict[str, Any]:
        with self.lock:
            return self.gtt_book.get(gtt_id).as_kite()

    def gtts_kite(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Newest first like Kite; Kite's list leaves deleted GTTs out."""
        with self.lock:
            gtts = sorted(self.gtt_book.gtts.values(), key=lambda g: g.id, reverse=True)
            return [g.as_kite() for g in gtts if include_deleted or g.status != "deleted"]

    # --- account -------------------------------------------------------------------

    def add_holding(self, symbol_or_token: str | int, quantity: int, average_price: float) -> None:
        """Seed a delivery holding, as if bought on an earlier day."""
        with self.lock:
            instrument = self.instrument(symbol_or_token)
            self.portfolio.add_holding(instrument, quantity, average_price)

    def new_day(self) -> None:
        """Close the day: CNC positions become holdings; orders and trades start empty."""
        with self.lock:
            self.portfolio.new_day(dict(self.prices))
            self.orders.clear()
            self.trades.clear()
            self._changed.notify_all()

    def positions_kite(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            return self.portfolio.positions_kite(self.prices)

    def holdings_kite(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.portfolio.holdings_kite(self.prices)

    def margins_kite(self) -> dict[str, Any]:
        with self.lock:
            return self.portfolio.margins_kite(self._blocked(), self.prices)

    def commodity_margins_kite(self) -> dict[str, Any]:
        with self.lock:
            return self.portfolio.commodity_margins_kite()

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        """Block until `predicate()` holds, re-checked on each change; TimeoutError names `what`."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(f"kitesim exchange: {what} not reached within {timeout}s")

    # --- internals -----------------------------------------------------------------

    def _instrument_of(self, form: dict[str, str]) -> Instrument:
        try:
            return self.instruments.instrument(
                form.get("tradingsymbol", ""), form.get("exchange", "")
            )
        except UnknownInstrument:
            raise input_error("Invalid `tradingsymbol` or `exchange`.") from None

    def _blocked(self) -> float:
        """Cash held for open buy orders, at their limit (or the LTP for a market order)."""
        blocked = 0.0
        for order in self.orders.values():
            if order.is_buy and not order.is_final:
                price = order.price or self.prices.get(order.instrument.token, 0.0)
                blocked += order.pending_quantity * price
        return blocked

    def _rms_refusal(self, order: SimOrder) -> str | None:
        """Why the broker's risk checks refuse an accepted order (None: they pass)."""
        if order.is_buy:
            price = order.price or self.prices.get(order.instrument.token) or order.trigger_price
            required = order.quantity * price
            available = self.portfolio.available_cash(self._blocked())
            if required > available:
                return (
                    f"Insufficient funds. Required margin is {required:.2f} "
                    f"but available margin is {available:.2f}."
                )
            return None
        if order.product != "CNC":
            return None
        selling = sum(
            o.pending_quantity
            for o in self.orders.values()
            if o is not order
            and not o.is_buy
            and not o.is_final
            and o.product == "CNC"
            and o.instrument.symbol == order.instrument.symbol
        )
        sellable = self.portfolio.sellable(order.instrument) - selling
        if order.quantity > sellable:
            return (
                f"Insufficient holdings: {max(sellable, 0)} {order.instrument.symbol} "
                f"available to sell, the order is for {order.quantity}."
            )
        return None

    def _match(self, order: SimOrder, last_price: float) -> None:
        now = self.now()
        if order.stop_reached(last_price):
            order.move_to(OPEN, now)
            self._emit(order, None)
        price = order.fill_price(last_price)
        quantity = order.fillable_quantity()
        if price is None or quantity <= 0:
            return
        self._seq += 1
        self.trades.append(Trade(f"{self._seq:08d}", order, quantity, price, now))
        order.record_fill(quantity, price)
        self.portfolio.apply_fill(
            order.instrument, order.product, order.transaction_type, quantity, price
        )
        if order.filled_quantity == order.quantity:
            order.move_to(COMPLETE, now)
            self._emit(order, COMPLETE)
        else:
            order.move_to(OPEN, now)
            self._emit(order, "UPDATE")

    def _cancel(self, order: SimOrder, message: str | None) -> None:
        now = self.now()
        order.move_to(CANCEL_PENDING, now)
        order.cancelled_quantity = order.quantity - order.filled_quantity
        order.move_to(CANCELLED, now, message)
        self._emit(order, CANCELLED)

    def _fire_gtt(self, gtt: SimGtt, leg: int, last_price: float) -> None:
        spec = gtt.orders[leg]
        form = {
            "exchange": spec["exchange"],
            "tradingsymbol": spec["tradingsymbol"],
            "transaction_type": spec["transaction_type"],
            "quantity": str(spec["quantity"]),
            "product": spec["product"],
            "order_type": "LIMIT",
            "price": str(spec["price"]),
            "validity": "DAY",
        }
        behaviour = self.gtt_order_behaviour()
        if behaviour is not None and behaviour.fail is not None:
            result = {"status": "failed", "order_id": "", "rejection_reason": behaviour.fail}
            self.gtt_book.mark_triggered(gtt, leg, last_price, self.now(), result)
            return
        try:
            order = self.place_order("regular", form, behaviour)
        except KiteError as exc:
            result = {"status": "failed", "order_id": "", "rejection_reason": exc.message}
        else:
            failed = order.status == REJECTED
            result = {
                "status": "failed" if failed else "success",
                "order_id": order.order_id,
                "rejection_reason": (order.status_message or "") if failed else "",
            }
        self.gtt_book.mark_triggered(gtt, leg, last_price, self.now(), result)

    def _emit(self, order: SimOrder, postback_status: str | None) -> None:
        self._changed.notify_all()
        if self.on_order_update is not None:
            self.on_order_update(order.as_kite(), postback_status)


def _float(form: dict[str, str], name: str, default: float) -> float:
    raw = form.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise input_error(f"Invalid `{name}`.") from None
