"""The trader: STRATEGY.md carried out against a broker, one event at a time, write-ahead.

The engine thread owns one Trader and feeds it every event: prices, the timer, broker
results, order updates, commands. The Trader asks the pure rules (strategy/) for
decisions and turns each into an event of the leg it concerns; the leg's lifecycle
(leg_lifecycle.py, pure) says what that leg now waits for and what must be done, and
LegEffects does it: the write before the broker call, the call through the order
gateway via `submit`. A call's answer comes back as another event of the same leg. It
never calls the broker itself, never sleeps and never reads the wall clock: the same
class runs live, paper and backtests (where `submit` executes inline).

Parts: desk.py holds the state (and batches each event's writes into one commit),
leg_effects.py carries out intents, broker_answers.py turns answers into leg events,
reconciliation.py settles the desk against the broker on start, controls.py handles
commands and builds the published view.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from Webapp.broker.base import (
    Broker,
    Gtt,
    OrderRequest,
    OrderType,
    OrderUpdate,
    Side,
    new_tag,
)
from Webapp.config.params import Params
from Webapp.execution import gateway as gw
from Webapp.execution import leg_events as ev
from Webapp.execution.broker_answers import BrokerAnswers
from Webapp.execution.clock import Clock
from Webapp.execution.commands import Command
from Webapp.execution.controls import Controls, ParamsLoader, build_view
from Webapp.execution.desk import Desk, LadderSlot, LegKey, Route, Submit, TraderConfig, batched
from Webapp.execution.leg_effects import LegEffects
from Webapp.execution.leg_lifecycle import (
    TIMED,
    LegWork,
    Stage,
    transition,
)
from Webapp.execution.reconciliation import Reconciliation, reconcile_note
from Webapp.execution.signal_inputs import SignalCandles, snapshots
from Webapp.execution.trading_view import SignalView, TradingState, TradingView
from Webapp.market.calendar import MarketCalendar
from Webapp.market.ltp_store import LTPStore
from Webapp.states import ExitReason, IllegalTransition, LegState
from Webapp.storage import audit
from Webapp.storage.trading_models import Trade
from Webapp.strategy.actions import Buy, Exit, ModifyGtt, RaiseStop, Skip
from Webapp.strategy.ladder import (
    Ladder,
    Leg,
    on_price,
    placeable,
    protection,
    sl_pct_for,
    stop_below,
    stop_raised,
)
from Webapp.strategy.signals import scan

__all__ = ["Submit", "Trader", "TraderConfig"]

log = logging.getLogger(__name__)

# Raised stops are written at most this often (the GTT at the broker is the protection;
# after a crash the stop restarts from max(saved stop, GTT trigger)).
STOP_FLUSH_EVERY = timedelta(seconds=1)
# A flush writes at most this many legs, so that a busy second does not stall the engine
# thread (the rest wait a second more: the GTT at the broker is what protects a leg).
STOPS_PER_FLUSH = 32
TRAILING = (TradingState.RUNNING, TradingState.PAUSED)


class Trader(Desk):
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
        params_loader: ParamsLoader | None = None,
    ) -> None:
        super().__init__(
            config=config,
            broker=broker,
            sessions=sessions,
            params=params,
            calendar=calendar,
            clock=clock,
            store=store,
            signal_candles=signal_candles,
            submit=submit,
        )
        # Paper and backtest only: the exchange side (step 1) runs before the rules see a price.
        self._exchange = exchange
        self.effects = LegEffects(self)
        self.answers = BrokerAnswers(self, self.handle, self.effects, self._reconcile_answer)
        self.reconciliation = Reconciliation(
            self, self.handle, self.answers.order_seen, self.leg_intent
        )
        self.controls = Controls(self, self.reconciliation, self.handle, params_loader)
        self._next_scan: datetime | None = None
        self._last_flush: datetime | None = None
        self._next_gtt_sync: datetime | None = None

    # --- one leg, one event --------------------------------------------------------------

    def handle(self, key: LegKey, event: ev.Event) -> None:
        """Move one leg by `event` (its lifecycle decides) and carry out what it asks."""
        ls = self.ladders.get(key[0])
        work = None if ls is None else ls.work.get(key[1])
        if ls is None or work is None:
            return
        step = transition(work, event)
        if step.ignored:
            return
        self.changed = True
        new, follow = self.effects.carry_out(ls, step)
        self._settle(ls, work, new)
        if self.state is TradingState.RECONCILING:
            note = reconcile_note(work, new, ls.ladder.leg(new.position))
            if note is not None:
                self.reconcile_notes[key] = note
        for event_after in follow:
            self.handle(key, event_after)
        after = self.work(key)
        if (
            after is not None
            and after.stage in (Stage.GTT_SELLING, Stage.GTT_SELLING_MARKET)
            and after.exit_order_id in self.recent_orders
        ):
            seen = self.recent_orders.pop(after.exit_order_id)
            self.handle(key, ev.GttOrderSeen(seen, self.now()))
        self.controls.emergency_progress()

    def _settle(self, ls: LadderSlot, old: LegWork, new: LegWork) -> None:
        """The leg's new work in place: indexes, the rules' view, the ladder's end."""
        position = new.position
        ls.work[position] = new
        self.unindex(old)
        if new.stage is Stage.CANCELLED:
            ls.drop_leg(position)
            if not ls.live_positions():
                self.ladder_closed(ls, self.now())
            return
        if new.stage is Stage.CLOSED:
            if ls.finished:
                self.ladder_closed(ls, self.now())
            return
        self.index(new)
        leg = ls.ladder.leg(position)
        if leg is not None and leg.state is not new.leg_state:
            ls.update_leg(position, state=new.leg_state)

    def ladder_closed(self, ls: LadderSlot, at: datetime) -> None:
        self.ladders.pop(ls.symbol, None)
        self.last_closed[ls.symbol] = at
        for work in ls.work.values():
            self.unindex(work)
        self.changed = True

    def fail(self, reason: str) -> None:
        self.reconciliation.cancel()
        super().fail(reason)

    # --- prices -------------------------------------------------------------------------

    def on_price(self, symbol: str, ltp: float, at: datetime | None = None) -> None:
        """STRATEGY.md "Order of work on each price": broker side first, then the rules."""
        self.on_prices([(symbol, ltp, at or self.now())])

    def on_prices(self, prices: list[tuple[str, float, datetime | None]]) -> None:
        """The new prices of one engine event (one per symbol): each symbol's exchange side
        (step 1: the paper exchange commits its own changes) before its rules, and the
        decisions of all of them committed together, in one batch."""
        now = self.now()
        steps = []
        for symbol, ltp, at in prices:
            at = at or now
            self.ltp[symbol] = ltp
            fired = self._exchange(symbol, ltp, at) if self._exchange is not None else []
            steps.append((symbol, ltp, at, fired))
        with self.batch():
            for symbol, ltp, at, fired in steps:
                self._decide(symbol, ltp, at, fired)

    def _decide(self, symbol: str, ltp: float, at: datetime, fired: list[Gtt]) -> None:
        # Step 1's results first: a leg its GTT sold on this price is not open for step 2.
        for gtt in fired:
            key = self.by_gtt_id.get(gtt.gtt_id)
            if key is not None:
                self.handle(key, ev.GttSeen(gtt, at))
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
                self.dirty.setdefault((symbol, action.leg))
            elif isinstance(action, Exit):
                self.handle((symbol, action.leg), ev.ExitDecided(action.reason))
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
            elif isinstance(action, ModifyGtt) and self.state in TRAILING:
                self.handle((symbol, action.leg), ev.TrailDue(action))
        if actions:
            self.changed = True

    def _protect_waiting(self, ls: LadderSlot, ltp: float) -> None:
        """Bought legs without a GTT (refused at a fast price, vanished, or just restarted)."""
        now = self.now()
        for position, work in list(ls.work.items()):
            if work.stage is not Stage.UNPROTECTED:
                continue
            if work.retry_at is not None and now < work.retry_at:
                continue
            leg = ls.leg(position)
            gtt = protection(ls.symbol, leg, ltp, self.params)
            if placeable(gtt, ltp):
                self.handle((ls.symbol, position), ev.Protect(gtt))
            elif leg.target is not None and ltp >= leg.target:
                # Past P1's target before any GTT could hold it: take the target ourselves.
                self.handle((ls.symbol, position), ev.ExitDecided(ExitReason.TARGET))

    # --- the timer ----------------------------------------------------------------------

    @batched
    def on_timer(self, now: datetime | None = None) -> None:
        """Called about once a second: scans, exit timeouts, retries, stop flushes."""
        now = now or self.now()
        self._roll_day(now)
        if self.trading:
            tick = ev.Tick(now, timedelta(seconds=self.params.exit_timeout_s))
            timed = [
                (ls.symbol, position)
                for ls in self.ladders.values()
                for position, work in sorted(ls.work.items())
                if work.stage in TIMED
            ]
            for key in timed:
                self.handle(key, tick)
            if self.state is not TradingState.EMERGENCY:
                for ls in list(self.ladders.values()):
                    ltp = self.ltp.get(ls.symbol)
                    if ltp is not None:
                        self._protect_waiting(ls, ltp)
            if self.state is TradingState.RUNNING and (
                self._next_scan is None or now >= self._next_scan
            ):
                self._next_scan = now + timedelta(seconds=self.params.scan_interval_s)
                self.on_scan(now)
            self._maybe_sync_gtts(now)
            if self.retry_listing_at is not None and now >= self.retry_listing_at:
                self.retry_listing_at = None
                self.effects.list_gtts()
        if self._last_flush is None or now - self._last_flush >= STOP_FLUSH_EVERY:
            self._last_flush = now
            self.flush_stops()

    def flush_stops(self) -> None:
        """Write the stops and highs raised since the last flush, oldest first, at most
        STOPS_PER_FLUSH legs a second (the rest the next second), in one statement."""
        if not self.dirty:
            return
        dirty = list(itertools.islice(self.dirty, STOPS_PER_FLUSH))
        for key in dirty:
            del self.dirty[key]
        stops = []
        for symbol, position in dirty:
            ls = self.ladders.get(symbol)
            work = None if ls is None else ls.work.get(position)
            if ls is None or work is None:
                continue
            leg = ls.leg(position)
            if leg.state in (LegState.PROTECTING, LegState.OPEN):
                stops.append((work.trade_id, leg.stop, leg.high))
        self.journal.stops_raised(stops, self.now())

    def _roll_day(self, now: datetime) -> None:
        day = self.calendar.session_date(now)
        if day != self.day:
            self.day = day
            self.reconciliation.load_day_pnl(now)

    def _maybe_sync_gtts(self, now: datetime) -> None:
        every = self.config.gtt_sync_every
        if every is None or not self.ladders:
            return
        if self._next_gtt_sync is None or now >= self._next_gtt_sync:
            self._next_gtt_sync = now + every
            self.effects.list_gtts()

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
        if self.state is not TradingState.RUNNING or buy.qty <= 0:
            return
        if buy.qty * buy.price > self.params.max_order_value + 1e-6:
            self.error(f"{buy.symbol} P{buy.leg}: order value above max_order_value, not sent")
            return
        if ls is not None and any(w.stage is Stage.ENTERING for w in ls.work.values()):
            return  # an order already in flight for this ladder
        tag = new_tag("E")
        now = self.now()
        sl_pct = sl_pct_for(buy.leg, self.params)
        try:
            trade = self.leg_intent(ls, buy.symbol, buy.leg, buy.qty, tag, now)
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
        work = LegWork(buy.symbol, buy.leg, trade_id, Stage.ENTERING, entry_tag=tag)
        ls.work[buy.leg] = work
        self.index(work)
        request = OrderRequest(buy.symbol, Side.BUY, buy.qty, OrderType.MARKET, tag)
        self.note_order(buy.symbol, tag, Side.BUY, "MARKET", buy.qty, None, "pending", "entry")
        self.send(lambda i: gw.PlaceOrder(i, request), Route("buy", buy.symbol, buy.leg))

    def leg_intent(
        self,
        ls: LadderSlot | None,
        symbol: str,
        position: int,
        qty: int,
        tag: str,
        now: datetime,
    ) -> Trade:
        """Write a leg and its buy (PENDING, `tag`); a first leg opens its ladder with it."""
        target_pct = self.params.p1.target_pct if position == 1 else None
        sl_pct = sl_pct_for(position, self.params)
        ladder_id = None if ls is None else ls.ladder_id
        return self.journal.leg_intent(
            ladder_id, self.account, symbol, position, qty, sl_pct, target_pct, tag, now
        )

    # --- broker answers and order updates -------------------------------------------------

    @batched
    def on_result(self, result: gw.Result) -> None:
        """A broker call came back: its answer becomes an event of the leg it was for."""
        self.answers.result(result)

    @batched
    def on_order_update(self, update: OrderUpdate) -> None:
        self.answers.order_seen(update.order, update.received_at or self.now())

    # --- start-up, commands and the view --------------------------------------------------

    def _reconcile_answer(self, route: Route, result: gw.Result) -> None:
        assert route.part is not None
        outcome = self.reconciliation.answer(route.part, result)
        if outcome is None:
            return
        if outcome is not True:
            self.fail(str(outcome))
            return
        if self.state is not TradingState.RECONCILING:
            return  # failed meanwhile (a leg's event refused during the settlement)
        legs = sum(len(ls.live_positions()) for ls in self.ladders.values())
        self._next_scan = None
        message = f"reconciled with the broker: {len(self.ladders)} ladders, {legs} live legs"
        self.reconciled = tuple(self.reconcile_notes.values())
        if self.reconciled:
            count = len(self.reconciled)
            message += f"; {count} {'leg' if count == 1 else 'legs'} settled (listed below)"
            self.journal.write(
                audit.record,
                "system",
                "engine_reconcile",
                ok=True,
                message="; ".join(self.reconciled),
                account=self.account,
            )
        self.controls.reconciled(message)

    @batched
    def on_command(self, cmd: Command) -> None:
        self.controls.on_command(cmd)

    def build_view(self) -> TradingView:
        return build_view(self)

    @property
    def _params_loader(self) -> ParamsLoader | None:
        return self.controls.params_loader

    @_params_loader.setter
    def _params_loader(self, loader: ParamsLoader | None) -> None:
        self.controls.params_loader = loader
