"""KiteBroker: the live broker, Zerodha Kite Connect through the official kiteconnect client.

CNC equity orders and GTTs on NSE. Every request goes through `KiteCaller`
(kite_calls.py): token gate, circuit breaker, the shared KiteRateLimits, error
mapping, and retries for requests that are safe to repeat.

What is retried, and what is not:
- Reads (orders, history, positions, holdings, margins, GTTs, LTP), order
  modifications and cancels, GTT modifications and deletes: retried on
  NetworkUnavailable, RateLimited and 5xx, up to `max_attempts` sends with
  exponential backoff (0.5 s, 1 s, ... capped at 8 s; 429 waits at least 1 s).
- Order placement is never sent twice on an ambiguous failure (a timeout after
  sending, a reset, a lost reply, a 5xx). The order is looked up by its tag;
  found: it is returned. Not found: one more lookup after `lookup_wait_s`, and
  then NetworkUnavailable(maybe_applied=True): nothing is resent, the engine
  keeps the leg PENDING and reconciles it by tag. A failure that proves the
  order never reached Kite (connection refused, 429) is resent, bounded.
- GTT placement after an ambiguous failure first looks for an active GTT with
  the same symbol, type, quantity, triggers and limit prices that this broker
  did not place already; found: its id is returned. Not found (after the same
  second look): the GTT is placed again, at most `gtt_place_attempts` sends in
  all, because an unprotected leg is worse than a duplicate Kite would refuse
  to fill beyond the holding.

Market orders carry `market_protection=-1`: Kite's automatic protection, which
turns a market order into a limit at a band around the LTP set by Kite's own
guidelines (Kite refuses market orders without protection).

An expired token (TokenException) pauses trading: `status().token_valid` turns
False and every call raises TokenExpired unsent until `set_access_token`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kiteconnect import KiteConnect

from Webapp.broker.base import (
    Broker,
    BrokerError,
    BrokerStatus,
    Gtt,
    GttRequest,
    GttState,
    Holding,
    InputRejected,
    Margins,
    NetworkUnavailable,
    Order,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    OrderUpdate,
    Position,
)
from Webapp.broker.circuit_breaker import CircuitBreaker
from Webapp.broker.kite_calls import KiteCaller, RetryPolicy
from Webapp.broker.kite_convert import (
    gtt_orders,
    to_gtt,
    to_holding,
    to_margins,
    to_order,
    to_position,
)
from Webapp.broker.kite_errors import is_transient, maybe_applied
from Webapp.broker.kite_gtt_rules import check_gtt, check_modify, check_order
from Webapp.broker.order_updates import OrderPoller, OrderUpdateTracker
from Webapp.ratelimit import KiteRateLimits

_log = logging.getLogger(__name__)

VARIETY = "regular"
AUTO_MARKET_PROTECTION = -1  # Kite's automatic market protection


class KiteBroker(Broker):
    """One Kite account (see the module docstring); thread-safe."""

    name = "kite"

    def __init__(
        self,
        api_key: str,
        access_token: str,
        *,
        root: str | None = None,
        limits: KiteRateLimits | None = None,
        bus: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout: float = 7.0,
        market_protection: float = AUTO_MARKET_PROTECTION,
        max_attempts: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        lookup_wait_s: float = 1.0,
        gtt_place_attempts: int = 2,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
    ) -> None:
        super().__init__()
        if not api_key:
            raise ValueError("api_key is empty: set the Kite API key in the settings")
        if not (market_protection == -1 or 0 < market_protection <= 100):
            raise ValueError(f"market_protection must be -1 or 0-100, got {market_protection}")
        self.market_protection = market_protection
        self.lookup_wait_s = lookup_wait_s
        self.gtt_place_attempts = max(1, gtt_place_attempts)
        self._sleep = sleep
        self._now = now
        self._access_token = access_token or ""
        self._kite = KiteConnect(api_key, root=root, timeout=timeout)
        self._kite.set_access_token(self._access_token)
        self.limits = limits or KiteRateLimits(clock=clock, sleep=sleep)
        self.breaker = CircuitBreaker(
            failure_threshold=failure_threshold, cooldown_s=cooldown_s, clock=clock, name=self.name
        )
        self._caller = KiteCaller(
            name=self.name,
            limits=self.limits,
            breaker=self.breaker,
            retry=RetryPolicy(max_attempts, backoff_s, max_backoff_s),
            sleep=sleep,
            secrets=lambda: (self._access_token,),
            bus=bus,
        )
        self._caller.detail = self._status_detail
        if not self._access_token:
            self._caller.mark_token_missing()
        self._tracker = OrderUpdateTracker(self._emit_order_update, now)
        self._poller: OrderPoller | None = None
        self._poller_lock = threading.Lock()
        self._placed_gtts: set[int] = set()  # ids this broker got back from place_gtt
        self._active_gtts: int | None = None  # from the last gtts(), kept up to date

    def __repr__(self) -> str:
        return f"KiteBroker(root={self._kite.root!r}, {self._caller.status().circuit})"

    # --- login and status ------------------------------------------------------------------

    def set_access_token(self, access_token: str) -> None:
        """A new Kite login: calls are sent again with `access_token`."""
        if not access_token:
            raise ValueError("access_token is empty")
        self._access_token = access_token
        self._kite.set_access_token(access_token)
        self._caller.token_renewed()

    def status(self) -> BrokerStatus:
        """Circuit (closed | open | half_open), token validity and the last error."""
        return self._caller.status()

    def _status_detail(self) -> dict:
        poller = self._poller
        return {
            "polling": bool(poller and poller.running),
            "market_protection": self.market_protection,
        }

    # --- orders ------------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> Order:
        """Send a CNC order; never sent twice on an ambiguous failure (module docstring)."""
        check_order(request)
        params: dict[str, Any] = {
            "variety": VARIETY,
            "exchange": request.exchange,
            "tradingsymbol": request.symbol,
            "transaction_type": request.side.value,
            "quantity": request.quantity,
            "product": request.product,
            "order_type": request.order_type.value,
            "validity": "DAY",
            "tag": request.tag,
        }
        if request.order_type is OrderType.LIMIT:
            params["price"] = request.price
        else:
            params["market_protection"] = self.market_protection
        subject = f"{request.symbol} (tag {request.tag})"
        sends = 0
        while True:
            sends += 1
            try:
                order_id = self._caller.call(
                    "place_order",
                    subject,
                    lambda: self._kite.place_order(**params),
                    kind="order",
                    repeatable=False,
                )
            except BrokerError as error:
                if maybe_applied(error):
                    return self._find_placed_order(request, subject, error)
                if sends < self._caller.retry.max_attempts and is_transient(error):
                    self._sleep(self._caller.retry.delay_s(sends, error))
                    continue  # it provably never reached Kite: sending again is safe
                raise
            return Order(
                order_id=str(order_id),
                tag=request.tag,
                symbol=request.symbol,
                side=request.side,
                order_type=request.order_type,
                quantity=request.quantity,
                state=OrderState.PENDING,
                price=request.price,
                exchange=request.exchange,
                product=request.product,
                updated_at=self._now(),
            )

    def _find_placed_order(self, request: OrderRequest, subject: str, error: BrokerError) -> Order:
        """After an ambiguous placement: the order by its tag, or NetworkUnavailable."""
        for look in range(2):
            if look:
                self._sleep(self.lookup_wait_s)
            try:
                found = self.find_order_by_tag(request.tag)
            except BrokerError as lookup_error:
                raise NetworkUnavailable(
                    f"place_order {subject}: {error.message}; looking the order up by its tag "
                    f"failed too ({lookup_error.message}); not resent, reconcile by tag",
                    code=error.code,
                    maybe_applied=True,
                ) from error
            if found is not None:
                _log.warning("place_order %s: reply lost, found order %s", subject, found.order_id)
                return found
        raise NetworkUnavailable(
            f"place_order {subject}: {error.message}; no order carries the tag after two "
            "lookups; not resent, reconcile by tag before placing again",
            code=error.code,
            maybe_applied=True,
        ) from error

    def modify_order(
        self,
        order_id: str,
        *,
        quantity: int | None = None,
        price: float | None = None,
        order_type: OrderType | None = None,
    ) -> None:
        """Change a resting order; to MARKET with Kite's market protection. Retried."""
        check_modify(order_id, quantity=quantity, price=price, order_type=order_type)
        params: dict[str, Any] = {"variety": VARIETY, "order_id": order_id}
        if quantity is not None:
            params["quantity"] = quantity
        if price is not None:
            params["price"] = price
        if order_type is not None:
            params["order_type"] = order_type.value
            if order_type is OrderType.MARKET:
                params["market_protection"] = self.market_protection
        self._caller.call(
            "modify_order", order_id, lambda: self._kite.modify_order(**params), repeatable=True
        )

    def cancel_order(self, order_id: str) -> None:
        """Cancel; an order already cancelled (e.g. by a retried cancel) counts as done."""
        try:
            self._caller.call(
                "cancel_order",
                order_id,
                lambda: self._kite.cancel_order(VARIETY, order_id),
                repeatable=True,
            )
        except (InputRejected, OrderRejected) as error:
            history = self.order_history(order_id)
            if history and history[-1].state is OrderState.CANCELLED:
                return
            raise error

    def orders(self) -> list[Order]:
        raw = self._caller.call("orders", "", self._kite.orders, repeatable=True)
        return [to_order(item) for item in raw or []]

    def order_history(self, order_id: str) -> list[Order]:
        raw = self._caller.call(
            "order_history",
            order_id,
            lambda: self._kite.order_history(order_id),
            repeatable=True,
        )
        return [to_order(item) for item in raw or []]

    # --- account ---------------------------------------------------------------------------

    def positions(self) -> list[Position]:
        raw = self._caller.call("positions", "", self._kite.positions, repeatable=True)
        return [to_position(item) for item in (raw or {}).get("net", [])]

    def holdings(self) -> list[Holding]:
        raw = self._caller.call("holdings", "", self._kite.holdings, repeatable=True)
        return [to_holding(item) for item in raw or []]

    def margins(self) -> Margins:
        raw = self._caller.call("margins", "", self._kite.margins, repeatable=True)
        return to_margins((raw or {}).get("equity") or {})

    def ltp(self, symbols: list[str], exchange: str = "NSE") -> dict[str, float]:
        """Last traded prices (Kite's quote API, 1 request a second): {symbol: price}."""
        keys = [f"{exchange}:{symbol}" for symbol in symbols]
        raw = self._caller.call(
            "ltp", ",".join(symbols), lambda: self._kite.ltp(*keys), kind="quote", repeatable=True
        )
        return {
            key.split(":", 1)[1]: float(value["last_price"]) for key, value in (raw or {}).items()
        }

    # --- GTTs ------------------------------------------------------------------------------

    def place_gtt(self, request: GttRequest) -> int:
        """Place a GTT after checking Kite's rules; ambiguous failures look before resending."""
        check_gtt(request, active_gtts=self._active_gtts)
        args = self._gtt_args(request)
        subject = request.symbol
        sends = 0
        while True:
            sends += 1
            try:
                reply = self._caller.call(
                    "place_gtt", subject, lambda: self._kite.place_gtt(**args), repeatable=False
                )
            except BrokerError as error:
                if not maybe_applied(error):
                    if sends < self._caller.retry.max_attempts and is_transient(error):
                        self._sleep(self._caller.retry.delay_s(sends, error))
                        continue
                    raise
                found = self._find_placed_gtt(request, error)
                if found is not None:
                    return self._placed(found)
                if sends < self.gtt_place_attempts:
                    _log.warning("place_gtt %s: no GTT after a lost reply; placing again", subject)
                    continue
                raise NetworkUnavailable(
                    f"place_gtt {subject}: {error.message}; no matching active GTT found and "
                    f"{sends} sends made; reconcile before placing again",
                    code=error.code,
                    maybe_applied=True,
                ) from error
            return self._placed(int(reply["trigger_id"]))

    def _placed(self, gtt_id: int) -> int:
        self._placed_gtts.add(gtt_id)
        if self._active_gtts is not None:
            self._active_gtts += 1
        return gtt_id

    def _find_placed_gtt(self, request: GttRequest, error: BrokerError) -> int | None:
        for look in range(2):
            if look:
                self._sleep(self.lookup_wait_s)
            try:
                gtts = self.gtts()
            except BrokerError as lookup_error:
                raise NetworkUnavailable(
                    f"place_gtt {request.symbol}: {error.message}; looking for the GTT failed "
                    f"too ({lookup_error.message}); reconcile before placing again",
                    code=error.code,
                    maybe_applied=True,
                ) from error
            for gtt in gtts:
                if gtt.gtt_id not in self._placed_gtts and _same_gtt(gtt, request):
                    _log.warning("place_gtt %s: lost reply, GTT %d", request.symbol, gtt.gtt_id)
                    return gtt.gtt_id
        return None

    def modify_gtt(self, gtt_id: int, request: GttRequest) -> None:
        """Move a GTT's triggers (the trailing stop); checked by Kite's rules, retried."""
        check_gtt(request, operation="modify_gtt")
        args = self._gtt_args(request)
        self._caller.call(
            "modify_gtt",
            f"{request.symbol} (GTT {gtt_id})",
            lambda: self._kite.modify_gtt(gtt_id, **args),
            repeatable=True,
        )

    def delete_gtt(self, gtt_id: int) -> GttState:
        """Delete; returns ACTIVE when it was active (now gone), else the state it had.

        Kite refuses to delete a GTT that is no longer active; the refusal is
        answered by reading the GTT: TRIGGERED means its order exists (never sell
        twice). DELETED after a refusal means an earlier attempt whose reply was
        lost (or a person) deleted it while active, so ACTIVE is returned.
        """
        try:
            self._caller.call(
                "delete_gtt", str(gtt_id), lambda: self._kite.delete_gtt(gtt_id), repeatable=True
            )
        except (InputRejected, OrderRejected) as error:
            gtt = self.get_gtt(gtt_id)
            if gtt.state is GttState.ACTIVE:
                raise error
            return GttState.ACTIVE if gtt.state is GttState.DELETED else gtt.state
        if self._active_gtts is not None:
            self._active_gtts = max(0, self._active_gtts - 1)
        return GttState.ACTIVE

    def gtts(self) -> list[Gtt]:
        raw = self._caller.call("gtts", "", self._kite.get_gtts, repeatable=True)
        gtts = [to_gtt(item) for item in raw or []]
        self._active_gtts = sum(1 for gtt in gtts if gtt.state is GttState.ACTIVE)
        return gtts

    def get_gtt(self, gtt_id: int) -> Gtt:
        raw = self._caller.call(
            "get_gtt", str(gtt_id), lambda: self._kite.get_gtt(gtt_id), repeatable=True
        )
        return to_gtt(raw)

    def _gtt_args(self, request: GttRequest) -> dict[str, Any]:
        return {
            "trigger_type": request.gtt_type.value,
            "tradingsymbol": request.symbol,
            "exchange": request.exchange,
            "trigger_values": list(request.triggers),
            "last_price": request.last_price,
            "orders": gtt_orders(
                request.symbol,
                request.exchange,
                request.side.value,
                request.quantity,
                request.limit_prices,
            ),
        }

    # --- order updates ---------------------------------------------------------------------

    def ingest_order_update(self, raw: dict, source: str = "ticker") -> OrderUpdate | None:
        """An order update from the ticker, a postback or a poll; emitted once per new state.

        Hook it to KiteFeed's `on_order_update` (source "ticker" is the default); the
        postback route calls it with source="postback" after checking the checksum.
        Returns the update when it was news, None when another source brought it first.
        Raises InputRejected for a payload without an order id.
        """
        return self._tracker.ingest(to_order(raw), source)

    def start_polling(self, interval_s: float = 5.0) -> None:
        """Poll the order book every `interval_s` as a fallback for lost pushes."""
        with self._poller_lock:
            if self._poller is not None and self._poller.running:
                raise RuntimeError("order polling is already running")
            self._poller = OrderPoller(self.orders, self._tracker.ingest, interval_s)
            self._poller.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the polling thread (a no-op when it is not running)."""
        with self._poller_lock:
            poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop(timeout)


def _same_gtt(gtt: Gtt, request: GttRequest) -> bool:
    return (
        gtt.state is GttState.ACTIVE
        and gtt.symbol == request.symbol
        and gtt.gtt_type is request.gtt_type
        and gtt.quantity == request.quantity
        and _same_prices(gtt.triggers, request.triggers)
        and _same_prices(gtt.limit_prices, request.limit_prices)
    )


def _same_prices(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))
