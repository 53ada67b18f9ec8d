"""The trader: STRATEGY.md carried out against a broker, one event at a time, write-ahead.

The engine thread owns one Trader and feeds it every event: prices, the timer, broker
results, order updates, commands. The Trader asks the pure rules (ladder.py, signals.py)
for decisions, writes each intent to the app DB before the broker call that carries it
out (trading_store / trading_gtts / trading_exits), hands the call to the order gateway
via `submit`, and records the result when it comes back as another event. It never
calls the broker itself, never sleeps and never reads the wall clock: the same class
runs live, paper and backtests (where `submit` executes inline).

Split by job: this file holds prices, the timer, the scan and entries; trader_gtts.py
GTT placement and trailing; trader_exits.py the cancel-first exits and the emergency
stop; reconcile.py the start-up reconciliation; trader_controls.py the commands and the
published view.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from Webapp.broker.base import (
    Broker,
    BrokerError,
    Gtt,
    Order,
    OrderRequest,
    OrderState,
    OrderType,
    OrderUpdate,
    Side,
    new_tag,
)
from Webapp.config.params import Params
from Webapp.execution import gateway as gw
from Webapp.execution.clock import Clock
from Webapp.execution.commands import Command
from Webapp.execution.reconcile import Reconciler
from Webapp.execution.signal_inputs import SignalCandles, snapshots
from Webapp.execution.slots import HELD, LIVE, LadderSlot, LegSlot
from Webapp.execution.trader_controls import Controls
from Webapp.execution.trader_exits import ExitFlow
from Webapp.execution.trader_gtts import GttFlow
from Webapp.execution.trading_view import ErrorView, OrderView, SignalView, TradingState
from Webapp.market.calendar import MarketCalendar
from Webapp.market.ltp_store import LTPStore
from Webapp.states import ExitReason, IllegalTransition, LegState, OrderIntentState
from Webapp.storage import trading_store
from Webapp.storage.db import transaction
from Webapp.storage.trading_models import Trade
from Webapp.strategy.actions import Buy, Exit, ModifyGtt, RaiseStop, Skip
from Webapp.strategy.ladder import (
    Ladder,
    Leg,
    on_fill,
    on_price,
    protection,
    sl_pct_for,
    stop_below,
    stop_raised,
)
from Webapp.strategy.limits import Book
from Webapp.strategy.signals import scan

log = logging.getLogger(__name__)

Submit = Callable[[gw.GatewayRequest, bool], None]  # (request, urgent)
OnDone = Callable[[Any, datetime], None]
OnFailed = Callable[[BrokerError, bool], None]  # (error, ambiguous)

# Raised stops are written at most this often (the GTT at the broker is the protection;
# after a crash the stop restarts from max(saved stop, GTT trigger)).
STOP_FLUSH_EVERY = timedelta(seconds=1)
OUR_TAG = re.compile(r"^[EX][0-9a-f]{16}$")  # new_tag("E") buys, new_tag("X") sells


@dataclass
class TraderConfig:
    account: str  # "paper", "live", "backtest:<run>"
    universe: list[str]
    use_exchange_time: bool = False  # replay/backtest: a tick's age is by market time
    gtt_sync_every: timedelta | None = None  # live: list GTTs this often to catch triggers


class Trader(GttFlow, ExitFlow, Reconciler, Controls):
    """Single-threaded by contract: every method is called from the engine thread only."""

    def __init__(
        self,
        *,
        config: TraderConfig,
        broker: Broker,
        sessions: sessionmaker[Session],
        params: Params,
        calendar: MarketCalendar,
        clock: Clock,
        store: LTPStore,
        signal_candles: SignalCandles,
        submit: Submit,
        exchange: Callable[[str, float, datetime], list[Gtt]] | None = None,
        params_loader: Callable[[str | None], tuple[Params, str]] | None = None,
    ) -> None:
        self.config = config
        self.account = config.account
        self.broker = broker
        self.sessions = sessions
        self.params = params
        self.calendar = calendar
        self.clock = clock
        self.store = store
        self.signal_candles = signal_candles
        self._submit = submit
        # Paper and backtest only: the exchange side (step 1) runs before the rules see a price.
        self._exchange = exchange
        self._params_loader = params_loader
        self.state = TradingState.STOPPED
        self.detail = "not started"
        self.entries_paused = False
        self.params_version: int | None = None
        self.ladders: dict[str, LadderSlot] = {}
        self.last_closed: dict[str, datetime] = {}
        self.ltp: dict[str, float] = {}
        self.signals: dict[str, SignalView] = {}
        self.orders_log: deque[OrderView] = deque(maxlen=50)
        self.errors: deque[ErrorView] = deque(maxlen=30)
        self.realised_net = 0.0  # today's closed legs, net of charges
        self.realised_gross = 0.0
        self.charges_today = 0.0
        self.dp_billed: set[str] = set()  # symbols sold today (the DP charge is once a day)
        self.day = None
        self.changed = True  # the published view is out of date
        self._by_tag: dict[str, LegSlot] = {}
        self._by_order_id: dict[str, LegSlot] = {}
        self._by_gtt_id: dict[int, LegSlot] = {}
        self._recent_orders: dict[str, Order] = {}  # updates of orders not (yet) known as ours
        self._waiting: dict[str, tuple[OnDone, OnFailed]] = {}
        self._intents = itertools.count(1)
        self._next_scan: datetime | None = None
        self._last_flush: datetime | None = None
        self._next_gtt_sync: datetime | None = None
        self._gtt_sync_in_flight = False
        self.retry_sync_at: datetime | None = None
        self._reconcile_parts: dict[str, Any] | None = None
        self._starting: list[Command] = []  # START commands answered once reconciled

    # --- plumbing ---------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def send(
        self,
        make: Callable[[str], gw.GatewayRequest],
        on_done: OnDone,
        on_failed: OnFailed,
        *,
        urgent: bool = False,
    ) -> None:
        """Submit one broker call; exactly one of the handlers runs when its result arrives."""
        intent_id = f"i{next(self._intents)}"
        request = make(intent_id)
        self._waiting[intent_id] = (on_done, on_failed)
        self._submit(request, urgent)

    def on_result(self, result: gw.Result) -> None:
        handlers = self._waiting.pop(result.request.intent_id, None)
        if handlers is None:
            log.warning("result for an unknown intent %s ignored", result.request.intent_id)
            return
        self.changed = True
        on_done, on_failed = handlers
        if isinstance(result, gw.Done):
            on_done(result.value, result.at or self.now())
        else:
            on_failed(result.error, result.ambiguous)

    def error(self, message: str) -> None:
        """A problem the trader must see on the dashboard (and in the log); never a secret."""
        log.warning("%s", message)
        self.errors.appendleft(ErrorView(self.now(), message))
        self.changed = True

    def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One write-ahead step in its own committed transaction; returns fn's result."""
        with transaction(self.sessions) as session:
            return fn(session, *args, **kwargs)

    def note_order(
        self,
        slot: LegSlot,
        tag: str | None,
        side: Side,
        order_type: str,
        qty: int,
        price: float | None,
        state: str,
        purpose: str,
        message: str | None = None,
    ) -> None:
        self.orders_log.appendleft(
            OrderView(
                tag,
                slot.symbol,
                side.value,
                order_type,
                qty,
                price,
                state,
                purpose,
                self.now(),
                message,
            )
        )
        self.changed = True

    @property
    def trading(self) -> bool:
        """New orders of any kind may be sent (not stopped, failed or reconciling)."""
        return self.state in (TradingState.RUNNING, TradingState.PAUSED, TradingState.EMERGENCY)

    def book(self) -> Book:
        """The whole account as the limits see it: every live leg, today's P&L."""
        open_legs, capital, unrealised = 0, 0.0, 0.0
        for ls in self.ladders.values():
            ltp = self.ltp.get(ls.symbol)
            for leg in ls.ladder.legs:
                if leg.state not in LIVE:
                    continue
                open_legs += 1
                capital += leg.qty * leg.entry_price
                if leg.state in HELD and ltp is not None:
                    unrealised += (ltp - leg.entry_price) * leg.qty
        return Book(
            open_legs=open_legs,
            capital_in_use=capital,
            day_pnl=self.realised_net + unrealised,
            entries_paused=self.entries_paused or self.state is not TradingState.RUNNING,
        )

    # --- prices -------------------------------------------------------------------------

    def on_price(self, symbol: str, ltp: float, at: datetime | None = None) -> None:
        """STRATEGY.md "Order of work on each price": broker side first, then the rules."""
        at = at or self.now()
        self.ltp[symbol] = ltp
        if self._exchange is not None:
            # Step 1's results first: a leg its GTT sold on this price is not open for step 2.
            for gtt in self._exchange(symbol, ltp, at):
                self.gtt_fired_at_exchange(gtt, at)
        ls = self.ladders.get(symbol)
        if ls is None or not self.trading:
            return
        self._protect_waiting(ls, ltp)
        if self.state is TradingState.EMERGENCY:
            return
        # The account book is summed only if a leg may be added (rare): not on every price.
        actions = on_price(ls.ladder, ltp, self.now(), self.params, self.book)
        for action in actions:
            if isinstance(action, RaiseStop):
                ls.set_leg(stop_raised(ls.leg(action.leg), action))
                ls.legs[action.leg].dirty = True
            elif isinstance(action, Exit):
                self.exit_leg(ls, action.leg, action.reason, ltp)
            elif isinstance(action, Buy):
                self.buy(action, ls)
            elif isinstance(action, Skip):
                self.signals[symbol] = SignalView(
                    symbol,
                    "open",
                    action.reason.value,
                    f"P{action.leg}: {action.detail}",
                    self.now(),
                    None,
                )
            elif isinstance(action, ModifyGtt):
                self.modify_gtt(ls, action)
        if actions:
            self.changed = True

    def gtt_fired_at_exchange(self, gtt: Gtt, at: datetime) -> None:
        """The paper exchange fired one of our GTTs on this price (step 1)."""
        slot = self._by_gtt_id.get(gtt.gtt_id)
        ls = self.ladders.get(slot.symbol) if slot is not None else None
        if slot is None or ls is None or slot.gtt_row_id is None:
            return
        self.changed = True
        self._gtt_fired(ls, slot.position, gtt, at)

    def _protect_waiting(self, ls: LadderSlot, ltp: float) -> None:
        """Bought legs still without a GTT (refused at a fast price, or just restarted)."""
        for position, slot in ls.legs.items():
            leg = ls.leg(position)
            if leg.state not in (LegState.PROTECTING, LegState.OPEN) or slot.gtt_row_id:
                continue
            if slot.gtt_work or (slot.gtt_retry_at and self.now() < slot.gtt_retry_at):
                continue
            if leg.state is LegState.PROTECTING or slot.gtt_id is None:
                self.place_gtt(ls, position, protection(ls.symbol, leg, ltp, self.params))

    # --- the timer ----------------------------------------------------------------------

    def on_timer(self, now: datetime | None = None) -> None:
        """Called about once a second: scans, exit timeouts, retries, stop flushes."""
        now = now or self.now()
        self._roll_day(now)
        if self.trading:
            self.check_exits(now)
            for ls in list(self.ladders.values()):
                ltp = self.ltp.get(ls.symbol)
                if ltp is not None and self.state is not TradingState.EMERGENCY:
                    self._protect_waiting(ls, ltp)
            if self.state is TradingState.RUNNING and (
                self._next_scan is None or now >= self._next_scan
            ):
                self._next_scan = now + timedelta(seconds=self.params.scan_interval_s)
                self.on_scan(now)
            self._maybe_sync_gtts(now)
        if self._last_flush is None or now - self._last_flush >= STOP_FLUSH_EVERY:
            self._last_flush = now
            self.flush_stops()

    def flush_stops(self) -> None:
        """Write the stops and highs raised since the last flush, in one transaction."""
        dirty = [
            (ls, slot) for ls in self.ladders.values() for slot in ls.legs.values() if slot.dirty
        ]
        if not dirty:
            return
        with transaction(self.sessions) as session:
            for ls, slot in dirty:
                leg = ls.leg(slot.position)
                if leg.state in (LegState.PROTECTING, LegState.OPEN):
                    trading_store.raise_stop(
                        session, slot.trade_id, leg.stop, leg.high, now=self.now()
                    )
        for _, slot in dirty:
            slot.dirty = False

    def _roll_day(self, now: datetime) -> None:
        day = self.calendar.session_date(now)
        if day != self.day:
            self.day = day
            self.load_day_pnl(now)

    # --- the scan -----------------------------------------------------------------------

    def on_scan(self, now: datetime) -> None:
        universe = self.config.universe
        inputs = self.signal_candles.inputs(universe, now)
        quotes = {s: q for s in universe if (q := self.store.get(s)) is not None}
        open_symbols = set(self.ladders)
        snaps = snapshots(
            universe,
            quotes,
            inputs,
            open_symbols=open_symbols,
            last_closed=self.last_closed,
            use_exchange_time=self.config.use_exchange_time,
        )
        buys, skips = scan(snaps, now, self.params, self.book(), self.calendar)
        changes = {s.symbol: s.day_change_pct for s in snaps}
        for skip in skips:
            state = "open" if skip.symbol in open_symbols else "skipped"
            self.signals[skip.symbol] = SignalView(
                skip.symbol, state, skip.reason.value, skip.detail, now, changes.get(skip.symbol)
            )
        for buy in buys:
            self.signals[buy.symbol] = SignalView(
                buy.symbol,
                "entered",
                "",
                f"P1 {buy.qty} @ {buy.price:.2f}",
                now,
                changes.get(buy.symbol),
            )
            self.buy(buy, None)
        self.changed = True

    # --- entries ------------------------------------------------------------------------

    def buy(self, buy: Buy, ls: LadderSlot | None) -> None:
        """Write the leg and its buy (PENDING with a tag), then send the order."""
        if not self.trading or self.state is not TradingState.RUNNING:
            return
        if buy.qty <= 0:
            return
        if buy.qty * buy.price > self.params.max_order_value + 1e-6:
            self.error(f"{buy.symbol} P{buy.leg}: order value above max_order_value, not sent")
            return
        if ls is not None and any(ls.leg(p).state is LegState.PENDING_ENTRY for p in ls.legs):
            return  # an order already in flight for this ladder
        tag = new_tag("E")
        now = self.now()
        sl_pct = sl_pct_for(buy.leg, self.params)
        try:
            with transaction(self.sessions) as session:
                trade = self.leg_intent(session, ls, buy.symbol, buy.leg, buy.qty, tag, now)
                trade_id, ladder_id = trade.trade_id, trade.ladder_id
        except IllegalTransition as exc:
            self.error(f"{buy.symbol} P{buy.leg} not bought: {exc}")
            return
        if ls is None:
            ls = LadderSlot(ladder_id, Ladder(buy.symbol, opened_at=now))
            self.ladders[buy.symbol] = ls
        ls.set_leg(
            Leg(
                position_number=buy.leg,
                qty=buy.qty,
                entry_price=buy.price,
                entry_time=now,
                high=buy.price,
                stop=stop_below(buy.price, sl_pct),
                target=None,
                sl_pct=sl_pct,
                state=LegState.PENDING_ENTRY,
            )
        )
        slot = LegSlot(buy.symbol, buy.leg, trade_id, entry_tag=tag)
        ls.legs[buy.leg] = slot
        self._by_tag[tag] = slot
        request = OrderRequest(buy.symbol, Side.BUY, buy.qty, OrderType.MARKET, tag)
        self.note_order(slot, tag, Side.BUY, "MARKET", buy.qty, None, "pending", "entry")
        self.send(
            lambda i: gw.PlaceOrder(i, request),
            lambda order, at: self.order_seen(order, at),
            lambda err, ambiguous: self._entry_failed(slot, err, ambiguous),
        )

    def leg_intent(
        self,
        session: Session,
        ls: LadderSlot | None,
        symbol: str,
        position: int,
        qty: int,
        tag: str,
        now: datetime,
    ) -> Trade:
        """Write a leg and its buy (PENDING, `tag`); a first leg opens its ladder with it."""
        if ls is None:
            ladder_id = trading_store.open_ladder(session, self.account, symbol, now=now).id
        else:
            ladder_id = ls.ladder_id
        target_pct = self.params.p1.target_pct if position == 1 else None
        sl_pct = sl_pct_for(position, self.params)
        trade, _ = trading_store.add_leg_intent(
            session, ladder_id, position, qty, sl_pct, target_pct, tag, now=now
        )
        return trade

    def _entry_failed(self, slot: LegSlot, error: BrokerError, ambiguous: bool) -> None:
        if ambiguous:
            self.error(
                f"{slot.symbol} P{slot.position}: buy reply lost ({error.message}); "
                "looking it up by tag"
            )
            self.find_by_tag(slot, slot.entry_tag)
            return
        self.error(f"{slot.symbol} P{slot.position} buy refused: {error.message}")
        self.entry_not_filled(slot, OrderIntentState.REJECTED, error.message)

    def find_by_tag(self, slot: LegSlot, tag: str | None, attempt: int = 1) -> None:
        """After a lost reply: the order carrying `tag`, or (after 3 looks) it never arrived."""
        if tag is None:
            return

        def found(order: Order | None, at: datetime) -> None:
            if order is not None:
                self.order_seen(order, at)
            elif attempt < 3:
                self.find_by_tag(slot, tag, attempt + 1)
            elif tag == slot.entry_tag:
                self.entry_not_filled(
                    slot, OrderIntentState.CANCELLED, "not found at the broker after a lost reply"
                )
            else:
                self.sell_not_filled(
                    slot,
                    tag,
                    OrderIntentState.CANCELLED,
                    "not found at the broker after a lost reply",
                )

        self.send(
            lambda i: gw.FindOrderByTag(i, tag),
            found,
            lambda err, _a: self.error(
                f"order {tag} lookup failed: {err.message}; reconcile on restart"
            ),
        )

    def entry_not_filled(self, slot: LegSlot, state: OrderIntentState, message: str) -> None:
        ls = self.ladders.get(slot.symbol)
        if ls is None:
            return
        self.write(
            trading_store.cancel_entry,
            slot.trade_id,
            now=self.now(),
            order_state=state,
            message=message,
        )
        ls.ladder.legs = [g for g in ls.ladder.legs if g.position_number != slot.position]
        ls.legs.pop(slot.position, None)
        self.note_order(
            slot, slot.entry_tag, Side.BUY, "MARKET", 0, None, state.value, "entry", message
        )
        if not ls.ladder.legs:
            self.ladder_closed(ls, self.now())

    def ladder_closed(self, ls: LadderSlot, at: datetime) -> None:
        self.ladders.pop(ls.symbol, None)
        self.last_closed[ls.symbol] = at
        for slot in ls.legs.values():
            for key in (slot.entry_tag, slot.exit_tag):
                self._by_tag.pop(key or "", None)
        self.changed = True

    # --- order updates ------------------------------------------------------------------

    def on_order_update(self, update: OrderUpdate) -> None:
        self.order_seen(update.order, update.received_at or self.now())

    def order_seen(self, order: Order, at: datetime) -> None:
        """Any news of an order (a placement's reply, an update, a lookup): act on its state."""
        slot = self._by_tag.get(order.tag or "") or self._by_order_id.get(order.order_id)
        if slot is None:
            if order.tag and OUR_TAG.match(order.tag):
                return  # one of ours already settled (a reply arriving after its fill)
            self._recent_orders[order.order_id] = order
            if len(self._recent_orders) > 500:
                self._recent_orders.pop(next(iter(self._recent_orders)))
            if order.side is Side.SELL and order.symbol in self.ladders:
                self.sync_gtts()  # perhaps one of our GTTs fired: find out which
            return
        self.changed = True
        if order.tag and order.tag == slot.entry_tag:
            self._entry_update(slot, order, at)
        elif order.tag and order.tag == slot.exit_tag:
            self.exit_update(slot, order, at)
        elif order.order_id == slot.gtt_order_id:
            self.gtt_order_update(slot, order, at)

    def _entry_update(self, slot: LegSlot, order: Order, at: datetime) -> None:
        ls = self.ladders.get(slot.symbol)
        if ls is None or ls.leg(slot.position).state is not LegState.PENDING_ENTRY:
            return  # already settled (a late duplicate update)
        tag = slot.entry_tag
        assert tag is not None
        if slot.entry_order_id is None:
            slot.entry_order_id = order.order_id
            self._by_order_id[order.order_id] = slot
            self.write(trading_store.mark_order_sent, tag, order.order_id, now=at)
        if order.state is OrderState.FILLED or (order.state.is_final and order.filled_quantity > 0):
            self.entry_filled(ls, slot, order.filled_quantity, order.average_price, at)
        elif order.state in (OrderState.CANCELLED, OrderState.REJECTED):
            state = OrderIntentState(order.state.value)
            self.entry_not_filled(slot, state, order.status_message or order.state.value)

    def entry_filled(
        self, ls: LadderSlot, slot: LegSlot, qty: int, price: float, at: datetime
    ) -> None:
        """Record the buy, then protect the leg at once (or sell it in an emergency)."""
        self.write(
            trading_store.record_entry_fill,
            slot.trade_id,
            price,
            qty,
            at,
            broker_order_id=slot.entry_order_id,
        )
        ltp = self.ltp.get(ls.symbol, price)
        leg, gtt = on_fill(ls.symbol, slot.position, qty, price, at, self.params, last_price=ltp)
        ls.set_leg(leg)
        self.note_order(slot, slot.entry_tag, Side.BUY, "MARKET", qty, price, "filled", "entry")
        if self.state is TradingState.EMERGENCY:
            self.exit_leg(ls, slot.position, ExitReason.EMERGENCY, ltp)
            return
        self.place_gtt(ls, slot.position, gtt)

    def forget_leg(self, slot: LegSlot) -> None:
        for key in (slot.entry_tag, slot.exit_tag):
            self._by_tag.pop(key or "", None)
        for key in (slot.entry_order_id, slot.exit_order_id, slot.gtt_order_id):
            self._by_order_id.pop(key or "", None)
        if slot.gtt_id is not None:
            self._by_gtt_id.pop(slot.gtt_id, None)

    def index_leg(self, slot: LegSlot) -> None:
        for key in (slot.entry_tag, slot.exit_tag):
            if key:
                self._by_tag[key] = slot
        for key in (slot.entry_order_id, slot.exit_order_id, slot.gtt_order_id):
            if key:
                self._by_order_id[key] = slot
        if slot.gtt_id is not None:
            self._by_gtt_id[slot.gtt_id] = slot
