"""PaperBroker: the Broker interface over STRATEGY.md's paper fill model, its state in the app DB.

The engine drives it like an exchange: `on_price` for each new price of a symbol
(step 1 of "Order of work on each price": fill resting limit orders the price reaches,
turn timed-out exit orders into market orders, trigger GTTs the price crosses) and
`check_timeouts` on a timer. Every change is committed in one transaction before it is
returned or pushed as an OrderUpdate, so a new PaperBroker on the same database and
account continues exactly where the last one stopped.

Decisions the spec leaves open:
- Fills are whole (no partial fills) and at prices rounded to the 0.05 tick against the
  trader: buys up, sells down (paper_book.against_trader).
- A MARKET order (or a change to MARKET) with no known last price is refused with
  InputRejected: it could not fill, and a resting market order is not a thing.
- A buy that cash cannot cover is recorded as REJECTED (so its tag can be found) and
  raises OrderRejected; a sell of more than is held and not already being sold raises
  InputRejected and records nothing.
- An open LIMIT SELL is an exit: `exit_timeout_s` after it was placed (at or after)
  it becomes a MARKET order and fills at LTP × (1 − slippage). LIMIT buys rest until
  cancelled.
- holdings() and positions() read as Kite's do: today's (IST) fills are the day's net
  CNC position, holdings are the shares the day opened with, and a sale beyond the
  day's buys counts in their `used_quantity`; base.shares_held counts each share once.
- Nothing in the model is random: `seed` only prefixes order ids, so two accounts (paper
  and a backtest) never hand out the same id. Same clock, seed and prices, same result.
- One PaperBroker per account at a time, like the engine it serves (a single writer).
  A GTT still fires once if a second one runs (the trigger is a compare-and-set), and
  an order row carries a version, so a second writer fails rather than fill it twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from Webapp.broker import kite_gtt_rules
from Webapp.broker import paper_book as book
from Webapp.broker import paper_ledger as ledger
from Webapp.broker import paper_store as store
from Webapp.broker.base import (
    Broker,
    Gtt,
    GttRequest,
    GttState,
    GttType,
    Holding,
    InputRejected,
    Margins,
    Order,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    OrderUpdate,
    Position,
    Side,
)
from Webapp.broker.paper_ledger import PaperSummary
from Webapp.config.params import Params
from Webapp.storage.db import transaction
from Webapp.storage.paper_models import PaperAccount, PaperGtt, PaperOrder

Clock = Callable[[], datetime]
PriceSource = Callable[[str], float | None]


class PaperBroker(Broker):
    """One paper account; thread-safe (one lock), every change written before it is reported."""

    name = "paper"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        params: Params,
        *,
        clock: Clock,
        starting_cash: float,
        ltp: PriceSource | None = None,
        seed: int = 0,
        account: str = "paper",
    ) -> None:
        """Open (or continue) the paper account `account` in the database behind `sessions`.

        `ltp(symbol)` gives the current price for orders placed between ticks; when it has
        none, the last price `on_price` saw is used. `starting_cash` and `seed` only apply
        when the account is new: an existing account keeps its own.
        """
        super().__init__()
        self._sessions = sessions
        self._params = params
        self._clock = clock
        self._ltp = ltp
        self._last_prices: dict[str, float] = {}
        # Symbols with no open order: the trigger inputs of their active GTTs (often none).
        # A price that fires none of them changes nothing, so on_price skips the database.
        # An order or GTT call forgets its symbol's entry (rebuilt lazily).
        # A symbol's active GTTs' trigger inputs while it has no open order: a price that
        # fires none of them needs no database at all. Once warmed (one pass over the
        # account), a symbol that is neither watched nor `_stale` has nothing to do.
        self._watch: dict[str, tuple[float, float]] = {}  # its GTTs' quiet range
        self._stale: set[str] = set()
        self._warmed = False
        # One lock for every change: a price and an order never interleave, so a GTT
        # and a resting order are decided on the same state. The compare-and-set on the
        # GTT's state (store.move_gtt) makes a trigger once even across brokers.
        self._lock = threading.RLock()
        self._bands: dict[str, tuple[float, float]] = {}
        with self._lock:
            now = clock()
            with transaction(sessions) as session:
                acct = store.open_account(
                    session, account, starting_cash=starting_cash, seed=seed, now=now
                )
                self._account_id = acct.id
            self._finish_interrupted_triggers(now)

    def set_circuit_band(self, symbol: str, lower: float, upper: float) -> None:
        """The day's circuit band of `symbol`: a GTT's LIMIT sell priced outside it is
        refused as Kite refuses it (the GTT triggered, its order failed, none placed)."""
        with self._lock:
            self._bands[symbol] = (lower, upper)

    def use_params(self, params: Params) -> None:
        """A parameter reload: later fills, exit timeouts and charges follow `params`."""
        with self._lock:
            self._params = params

    # --- prices: the exchange side --------------------------------------------------

    def on_price(self, symbol: str, ltp: float, at: datetime | None = None) -> list[Gtt]:
        """A new price of `symbol`: fill what it reaches, time out exits, trigger GTTs.

        Returns the GTTs this price fired, as `get_gtt` would show them afterwards (their
        orders placed, filled when the price allows): STRATEGY.md's step 1, whose results
        the engine applies before its rules see the price. Order updates are emitted too.
        """
        with self._lock:
            at = at or self._clock()
            self._last_prices[symbol] = ltp
            if not self._warmed:
                self._warm_watch()
            watch = self._watch.get(symbol)
            if watch is None and symbol not in self._stale:
                return []  # no open order, no active GTT
            if watch is not None and watch[0] < ltp < watch[1]:
                return []  # fires none of the symbol's GTTs
            with transaction(self._sessions) as session:
                acct = store.account(session, self._account_id)
                updates = []
                for row in store.open_orders(session, acct.id, symbol):
                    updates += self._try_fill(session, acct, row, ltp, at)
            self._emit(updates, at)
            self._expire(at, symbol=symbol, ltp=ltp)
            with self._sessions() as session:
                fired = [
                    (row.id, leg)
                    for row in store.active_gtts(session, self._account_id, symbol)
                    if (leg := book.fired_leg(*_trigger_inputs(row), ltp)) is not None
                ]
            triggered = [pk for pk, leg in fired if self._trigger(pk, leg, ltp, at)]
            with self._sessions() as session:
                acct_id = self._account_id
                if not store.open_orders(session, acct_id, symbol):
                    self._watch[symbol] = book.quiet_range(
                        _trigger_inputs(row) for row in store.active_gtts(session, acct_id, symbol)
                    )
                    self._stale.discard(symbol)
                else:  # a resting order (a fired GTT's LIMIT): every price must look at it
                    self._forget_watch(symbol)
                return [store.to_gtt(session.get_one(PaperGtt, pk)) for pk in triggered]

    def _warm_watch(self) -> None:
        """Watch every symbol with active GTTs and no open order, in two queries."""
        watched: dict[str, list[tuple[GttType, tuple[float, ...], float]]] = {}
        with self._sessions() as session:
            busy = {row.symbol for row in store.open_orders(session, self._account_id)}
            for row in store.active_gtts(session, self._account_id):
                if row.symbol not in busy:
                    watched.setdefault(row.symbol, []).append(_trigger_inputs(row))
        self._watch = {symbol: book.quiet_range(gtts) for symbol, gtts in watched.items()}
        self._stale = busy
        self._warmed = True

    def _forget_watch(self, symbol: str) -> None:
        """Its orders or GTTs changed: the next price of `symbol` looks at the database."""
        self._watch.pop(symbol, None)
        self._stale.add(symbol)

    def check_timeouts(self, now: datetime | None = None) -> None:
        """Turn every exit LIMIT order open `exit_timeout_s` or longer into a MARKET order.

        Call it on a timer: `on_price` already does this for its own symbol, but an order
        on a symbol that stopped ticking would otherwise rest for ever. An order whose
        symbol has no known price stays as it is until one arrives.
        """
        with self._lock:
            self._expire(now or self._clock())

    # --- orders ---------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> Order:
        kite_gtt_rules.check_order(request)
        where = f"place_order {request.symbol}"
        with self._lock:
            self._forget_watch(request.symbol)
            now = self._clock()
            ltp = self._price(request.symbol)
            if request.order_type is OrderType.MARKET and ltp is None:
                raise InputRejected(f"{where}: no last price known, so a MARKET order cannot fill")
            with transaction(self._sessions) as session:
                acct = store.account(session, self._account_id)
                if request.side is Side.SELL:
                    ledger.check_sellable(
                        session, acct.id, request.exchange, request.symbol, request.quantity
                    )
                    refusal = None
                else:
                    refusal = ledger.buy_refusal(
                        session,
                        acct,
                        request.quantity,
                        self._buy_price(request.price, ltp),
                        self._params.charges,
                    )
                row = store.new_order(
                    acct,
                    now,
                    tag=request.tag,
                    symbol=request.symbol,
                    exchange=request.exchange,
                    product=request.product,
                    side=request.side.value,
                    order_type=request.order_type.value,
                    quantity=request.quantity,
                    price=request.price,
                )
                updates = [store.record(session, row, now)]
                if refusal is not None:
                    updates.append(ledger.reject(session, row, refusal, now))
                else:
                    updates += self._try_fill(session, acct, row, ltp, now)
            self._emit(updates, now)
        final = updates[-1]
        if final.state is OrderState.REJECTED:
            raise OrderRejected(f"{where}: {final.status_message} (order {final.order_id})")
        return final

    def modify_order(
        self,
        order_id: str,
        *,
        quantity: int | None = None,
        price: float | None = None,
        order_type: OrderType | None = None,
    ) -> None:
        kite_gtt_rules.check_modify(order_id, quantity=quantity, price=price, order_type=order_type)
        where = f"modify_order {order_id}"
        with self._lock:
            now = self._clock()
            with transaction(self._sessions) as session:
                acct = store.account(session, self._account_id)
                row = self._open_order(session, order_id, where)
                self._forget_watch(row.symbol)
                new_type = order_type or OrderType(row.order_type)
                new_quantity = quantity or row.quantity
                new_price = None if new_type is OrderType.MARKET else (price or row.price)
                if new_type is OrderType.LIMIT and new_price is None:
                    raise InputRejected(f"{where}: a LIMIT order needs a price")
                ltp = self._price(row.symbol)
                if new_type is OrderType.MARKET and ltp is None:
                    raise InputRejected(
                        f"{where}: no last price known, so a MARKET order cannot fill"
                    )
                if row.side == Side.SELL.value:
                    ledger.check_sellable(
                        session, acct.id, row.exchange, row.symbol, new_quantity, excluding=row.id
                    )
                else:
                    refusal = ledger.buy_refusal(
                        session,
                        acct,
                        new_quantity,
                        self._buy_price(new_price, ltp),
                        self._params.charges,
                        replacing=row,
                    )
                    if refusal is not None:
                        raise OrderRejected(f"{where}: {refusal}")
                row.order_type = new_type.value
                row.quantity = new_quantity
                row.price = new_price
                row.status_message = "modified"
                updates = [store.record(session, row, now)]
                updates += self._try_fill(session, acct, row, ltp, now)
            self._emit(updates, now)

    def cancel_order(self, order_id: str) -> None:
        with self._lock:
            now = self._clock()
            with transaction(self._sessions) as session:
                row = self._open_order(session, order_id, f"cancel_order {order_id}")
                self._forget_watch(row.symbol)
                row.state = OrderState.CANCELLED.value
                row.status_message = "cancelled by the user"
                update = store.record(session, row, now)
            self._emit([update], now)

    def orders(self) -> list[Order]:
        """Today's orders (IST day of the clock) and any still open from before, oldest first."""
        with self._sessions() as session:
            rows = store.orders_of_day(session, self._account_id, store.ist_day(self._clock()))
            return [store.to_order(row) for row in rows]

    def order_history(self, order_id: str) -> list[Order]:
        with self._sessions() as session:
            row = self._order(session, order_id, f"order_history {order_id}")
            return store.history(session, row)

    def find_order_by_tag(self, tag: str) -> Order | None:
        """The newest order with this tag, whatever its day."""
        with self._sessions() as session:
            row = session.scalars(
                select(PaperOrder)
                .where(PaperOrder.account_id == self._account_id, PaperOrder.tag == tag)
                .order_by(PaperOrder.id.desc())
                .limit(1)
            ).one_or_none()
            return store.to_order(row) if row is not None else None

    # --- account --------------------------------------------------------------------

    def positions(self) -> list[Position]:
        """Today's net CNC position per symbol from today's fills (negative for a sale out
        of holdings, as on Kite); P&L as Kite reckons it."""
        with self._sessions() as session:
            fills = store.fills(session, self._account_id, store.ist_day(self._clock()))
        return ledger.positions(fills, self._price)

    def holdings(self) -> list[Holding]:
        """As on Kite: the shares the day (IST) opened with, `used_quantity` of them sold
        today; today's buys are in positions() only (base.shares_held adds the two)."""
        with self._sessions() as session:
            rows = store.holdings(session, self._account_id, sold_out=True)
            fills = store.fills(session, self._account_id, store.ist_day(self._clock()))
            return ledger.holdings_as_day_opened(rows, fills, self._price)

    def margins(self) -> Margins:
        """Cash less what open BUY orders hold back (their limit value and its charges)."""
        with self._sessions() as session:
            acct = store.account(session, self._account_id)
            reserved = store.reserved_cash(session, acct.id, self._params.charges)
            return Margins(
                available_cash=acct.cash - reserved, utilised=reserved, net=acct.cash - reserved
            )

    def summary(self) -> PaperSummary:
        """Cash, holdings at cost, realised P&L and charges: the account's books."""
        with self._sessions() as session:
            return ledger.summary(session, store.account(session, self._account_id))

    # --- GTTs -----------------------------------------------------------------------

    def place_gtt(self, request: GttRequest) -> int:
        with self._lock:
            self._forget_watch(request.symbol)
            now = self._clock()
            with transaction(self._sessions) as session:
                acct = store.account(session, acct_id := self._account_id)
                book.check_gtt_request(
                    request,
                    operation="place_gtt",
                    active_gtts=len(store.active_gtts(session, acct_id)),
                    uncovered_quantity=ledger.uncovered(session, acct_id, request),
                )
                gtt_id = store.take_gtt_id(acct)
                session.add(
                    PaperGtt(
                        account_id=acct_id,
                        gtt_id=gtt_id,
                        symbol=request.symbol,
                        exchange=request.exchange,
                        product=request.product,
                        gtt_type=request.gtt_type.value,
                        side=request.side.value,
                        state=GttState.ACTIVE.value,
                        triggers=list(request.triggers),
                        limit_prices=list(request.limit_prices),
                        last_price=request.last_price,
                        quantity=request.quantity,
                        results=[],
                        created_at=now,
                        updated_at=now,
                    )
                )
            return gtt_id

    def modify_gtt(self, gtt_id: int, request: GttRequest) -> None:
        where = f"modify_gtt {gtt_id}"
        with self._lock:
            now = self._clock()
            with transaction(self._sessions) as session:
                row = self._gtt(session, gtt_id, where)
                self._forget_watch(row.symbol)
                if row.state != GttState.ACTIVE.value:
                    raise InputRejected(
                        f"{where}: the GTT is {row.state}; only an active one changes"
                    )
                if (request.symbol, request.exchange) != (row.symbol, row.exchange):
                    raise InputRejected(f"{where}: a GTT's symbol cannot change ({row.symbol})")
                book.check_gtt_request(
                    request,
                    operation="modify_gtt",
                    active_gtts=len(store.active_gtts(session, self._account_id)) - 1,
                    uncovered_quantity=ledger.uncovered(
                        session, self._account_id, request, excluding=gtt_id
                    ),
                )
                row.gtt_type = request.gtt_type.value
                row.triggers = list(request.triggers)
                row.limit_prices = list(request.limit_prices)
                row.last_price = request.last_price
                row.quantity = request.quantity
                row.updated_at = now

    def delete_gtt(self, gtt_id: int) -> GttState:
        """ACTIVE → DELETED and returns ACTIVE; any other state is left and returned as it is."""
        with self._lock:
            now = self._clock()
            with transaction(self._sessions) as session:
                row = self._gtt(session, gtt_id, f"delete_gtt {gtt_id}")
                self._forget_watch(row.symbol)
                if row.state == GttState.ACTIVE.value and store.move_gtt(
                    session, row.id, from_state=GttState.ACTIVE, to_state=GttState.DELETED, at=now
                ):
                    return GttState.ACTIVE
                session.refresh(row)  # another broker on this account may have moved it
                return GttState(row.state)

    def gtts(self) -> list[Gtt]:
        with self._sessions() as session:
            rows = session.scalars(
                select(PaperGtt)
                .where(PaperGtt.account_id == self._account_id)
                .order_by(PaperGtt.gtt_id)
            )
            return [store.to_gtt(row) for row in rows]

    def get_gtt(self, gtt_id: int) -> Gtt:
        with self._sessions() as session:
            return store.to_gtt(self._gtt(session, gtt_id, f"get_gtt {gtt_id}"))

    # --- internals ------------------------------------------------------------------

    def _price(self, symbol: str) -> float | None:
        price = self._ltp(symbol) if self._ltp is not None else None
        return price if price is not None else self._last_prices.get(symbol)

    def _buy_price(self, limit: float | None, ltp: float | None) -> float:
        """What a buy is costed at: its limit, or a market buy's fill price now."""
        if limit is not None:
            return limit
        assert ltp is not None  # a MARKET order without a price was refused before
        return book.market_fill_price(Side.BUY, ltp, self._params.paper.slippage_bps)

    def _emit(self, updates: list[Order], at: datetime) -> None:
        for order in updates:
            self._emit_order_update(OrderUpdate(order, source="paper", received_at=at))

    def _try_fill(
        self, session: Session, acct: PaperAccount, row: PaperOrder, ltp: float | None, at: datetime
    ) -> list[Order]:
        return ledger.try_fill(session, acct, row, ltp, at, self._params)

    def _expire(self, at: datetime, *, symbol: str | None = None, ltp: float | None = None) -> None:
        timeout = timedelta(seconds=self._params.exit_timeout_s)
        with transaction(self._sessions) as session:
            acct = store.account(session, self._account_id)
            updates = []
            for row in store.open_orders(session, acct.id, symbol):
                is_exit = row.side == Side.SELL.value and row.order_type == OrderType.LIMIT.value
                price = ltp if ltp is not None else self._price(row.symbol)
                if not is_exit or at - row.placed_at < timeout or price is None:
                    continue
                row.order_type = OrderType.MARKET.value
                row.price = None
                row.status_message = (
                    f"exit timeout: open {self._params.exit_timeout_s}s, now a MARKET order"
                )
                updates.append(store.record(session, row, at))
                updates += self._try_fill(session, acct, row, price, at)
        self._emit(updates, at)

    def _trigger(self, pk: int, leg: int, ltp: float, at: datetime) -> bool:
        """Fire one GTT leg: TRIGGERED is committed first, then its LIMIT sell is placed.
        False when another caller fired it first."""
        with transaction(self._sessions) as session:
            claimed = store.move_gtt(
                session,
                pk,
                from_state=GttState.ACTIVE,
                to_state=GttState.TRIGGERED,
                at=at,
                triggered_leg=leg,
            )
        if claimed:
            self._place_gtt_order(pk, ltp, at)
        return claimed

    def _place_gtt_order(self, pk: int, ltp: float | None, at: datetime) -> None:
        """The LIMIT sell of a triggered GTT, recorded in its results in the same transaction."""
        with transaction(self._sessions) as session:
            acct = store.account(session, self._account_id)
            gtt = session.get_one(PaperGtt, pk)
            band = self._bands.get(gtt.symbol)
            updates = ledger.place_gtt_order(session, acct, gtt, ltp, at, self._params, band)
        self._emit(updates, at)

    def _finish_interrupted_triggers(self, now: datetime) -> None:
        """A GTT marked TRIGGERED whose order was never placed (a crash in between) places it."""
        with self._sessions() as session:
            pending = store.triggered_without_order(session, self._account_id)
        for pk in pending:
            with self._sessions() as session:
                symbol = session.get_one(PaperGtt, pk).symbol
            self._place_gtt_order(pk, self._price(symbol), now)

    def _order(self, session: Session, order_id: str, where: str) -> PaperOrder:
        row = store.order_row(session, self._account_id, order_id)
        if row is None:
            raise InputRejected(f"{where}: no such order")
        return row

    def _open_order(self, session: Session, order_id: str, where: str) -> PaperOrder:
        row = self._order(session, order_id, where)
        if row.state != OrderState.OPEN.value:
            raise InputRejected(f"{where}: the order is {row.state}; only an open order changes")
        return row

    def _gtt(self, session: Session, gtt_id: int, where: str) -> PaperGtt:
        row = store.gtt_row(session, self._account_id, gtt_id)
        if row is None:
            raise InputRejected(f"{where}: no such GTT")
        return row


def _trigger_inputs(row: PaperGtt) -> tuple[GttType, tuple[float, ...], float]:
    return GttType(row.gtt_type), tuple(row.triggers), row.last_price
