"""The trader's desk: every open ladder with its legs' lifecycles, today's book, and the plumbing.

Everything the engine thread knows lives here, and only the engine thread touches it:
the ladders (the rules' `Ladder` plus each leg's `LegWork`), which broker ids and tags
belong to which leg, the last prices, the day's P&L, the published lists (signals,
orders, errors) and the trading state. The desk also sends broker calls to the order
gateway with a `Route` saying what each was for, so that its answer comes back as the
right event. The trader (trader.py) and its parts (leg_effects.py, reconciliation.py,
controls.py) all work on one desk.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from Webapp.broker.base import Broker, Order, Side
from Webapp.config.params import Params
from Webapp.execution import gateway as gw
from Webapp.execution.clock import Clock
from Webapp.execution.commands import Command
from Webapp.execution.journal import Journal, StoreJournal
from Webapp.execution.leg_lifecycle import FINAL, LegWork
from Webapp.execution.signal_inputs import SignalCandles
from Webapp.execution.trading_view import ErrorView, OrderView, SignalView, TradingState
from Webapp.market.calendar import MarketCalendar
from Webapp.market.ltp_store import LTPStore
from Webapp.states import LegState
from Webapp.storage import audit
from Webapp.strategy.ladder import Ladder, Leg
from Webapp.strategy.limits import Book

log = logging.getLogger(__name__)

Submit = Callable[[gw.GatewayRequest, bool], None]  # (request, urgent)
LegKey = tuple[str, int]  # (symbol, position)
HELD = frozenset({LegState.PROTECTING, LegState.OPEN, LegState.PENDING_EXIT})
# A GTT listing whose outcome is unknown is asked again after this long.
RETRY_LISTING = timedelta(seconds=5)


@dataclass
class TraderConfig:
    account: str  # "paper", "live", "backtest:<run>"
    universe: list[str]
    use_exchange_time: bool = False  # replay/backtest: a tick's age is by market time
    gtt_sync_every: timedelta | None = None  # live: list GTTs this often to catch triggers


@dataclass(frozen=True)
class Route:
    """What a broker call was for: its answer becomes an event of this leg (or of the desk)."""

    kind: str  # buy | sell | place_gtt | modify_gtt | delete_gtt | fetch_gtt | to_market |
    # cancel_buy | find_order | list_gtts | reconcile
    symbol: str | None = None
    position: int | None = None
    tag: str | None = None  # find_order: the tag looked up
    attempt: int = 1  # find_order: the how-manieth look
    part: str | None = None  # reconcile: which read

    @property
    def key(self) -> LegKey:
        assert self.symbol is not None and self.position is not None
        return self.symbol, self.position


@dataclass
class LadderSlot:
    """One open ladder: the rules' view (`ladder`) and each leg's broker-side work."""

    ladder_id: int
    ladder: Ladder
    work: dict[int, LegWork] = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        return self.ladder.symbol

    def leg(self, position: int) -> Leg:
        leg = self.ladder.leg(position)
        assert leg is not None, f"{self.symbol} P{position} has no leg"
        return leg

    def set_leg(self, new: Leg) -> None:
        """Replace the pure leg of the same position (rules return new Leg values)."""
        legs = self.ladder.legs
        for i, old in enumerate(legs):
            if old.position_number == new.position_number:
                legs[i] = new
                return
        legs.append(new)
        legs.sort(key=lambda g: g.position_number)

    def update_leg(self, position: int, **changes: Any) -> Leg:
        leg = replace(self.leg(position), **changes)
        self.set_leg(leg)
        return leg

    def drop_leg(self, position: int) -> None:
        self.ladder.legs = [g for g in self.ladder.legs if g.position_number != position]
        self.work.pop(position, None)

    def live_positions(self) -> list[int]:
        return [p for p, w in self.work.items() if w.stage not in FINAL]

    @property
    def finished(self) -> bool:
        return bool(self.work) and not self.live_positions()


def batched(method: Callable[..., Any]) -> Callable[..., Any]:
    """An entry point of the engine (a price, the timer, an answer, an update, a command):
    its writes are committed together, then its broker calls sent (Desk.batch)."""

    @functools.wraps(method)
    def run(self: Desk, *args: Any, **kwargs: Any) -> Any:
        with self.batch():
            return method(self, *args, **kwargs)

    return run


class Desk:
    """The engine thread's state and plumbing. Single-threaded by contract."""

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
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.account = config.account
        self.broker = broker
        self.sessions = sessions
        # Where each step is written before the call it announces (app DB by default).
        self.journal: Journal = journal or StoreJournal(sessions)
        self.params = params
        self.calendar = calendar
        self.clock = clock
        self.store = store
        self.signal_candles = signal_candles
        self._submit = submit
        self.state = TradingState.STOPPED
        self.detail = "not started"
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
        self.by_tag: dict[str, LegKey] = {}
        self.by_order_id: dict[str, LegKey] = {}
        self.by_gtt_id: dict[int, LegKey] = {}
        self.recent_orders: dict[str, Order] = {}  # updates of orders not (yet) known as ours
        self.waiting: dict[str, Route] = {}
        # Stops raised in memory, not yet written, oldest first (a dict as an ordered set).
        self.dirty: dict[LegKey, None] = {}
        self.listing_in_flight = False
        self.retry_listing_at: datetime | None = None
        self.starting: list[Command] = []  # START commands answered once reconciled
        # What reconciliation did, leg by leg (the last word on each leg): gathered while
        # RECONCILING, then published.
        self.reconcile_notes: dict[LegKey, str] = {}
        self.reconciled: tuple[str, ...] = ()
        self._intents = itertools.count(1)
        self._held: list[tuple[gw.GatewayRequest, bool]] | None = None  # an open batch's calls
        self._after: list[Callable[[], None]] = []  # and what waits for its commit

    # --- plumbing ---------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def send(
        self, make: Callable[[str], gw.GatewayRequest], route: Route, *, urgent: bool = False
    ) -> None:
        """Submit one broker call; its answer comes back to the trader with `route`.
        Inside a batch the call waits until the batch's writes are committed."""
        intent_id = f"i{next(self._intents)}"
        self.waiting[intent_id] = route
        request = make(intent_id)
        if self._held is not None:
            self._held.append((request, urgent))
        else:
            self._submit(request, urgent)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One engine event's decisions: their writes committed together (one fsync), then
        their broker calls sent, in order. Nested batches join the outer one."""
        if self._held is not None:
            yield
            return
        self._held, self._after = [], []
        try:
            with self.journal.batch():
                yield
            held, after = self._held, self._after
            self._held, self._after = None, []
            for request, urgent in held:  # committed: each call follows its write
                self._submit(request, urgent)
            for done in after:
                done()
        finally:
            self._held, self._after = None, []

    def error(self, message: str) -> None:
        """A problem the trader must see on the dashboard (and in the log); never a secret."""
        log.warning("%s", message)
        self.errors.appendleft(ErrorView(self.now(), message))
        self.changed = True

    def note_order(
        self,
        symbol: str,
        tag: str | None,
        side: Side,
        order_type: str,
        qty: int,
        price: float | None,
        state: str,
        purpose: str,
        message: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """One line of the published orders list (`at`: the broker's time, else now)."""
        self.orders_log.appendleft(
            OrderView(
                tag,
                symbol,
                side.value,
                order_type,
                qty,
                price,
                state,
                purpose,
                at or self.now(),
                message,
            )  # fmt: skip
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
                if leg.state in (LegState.CLOSED, LegState.CANCELLED):
                    continue
                open_legs += 1
                capital += leg.qty * leg.entry_price
                if leg.state in HELD and ltp is not None:
                    unrealised += (ltp - leg.entry_price) * leg.qty
        return Book(
            open_legs=open_legs,
            capital_in_use=capital,
            day_pnl=self.realised_net + unrealised,
            entries_paused=self.state is not TradingState.RUNNING,
        )

    def fail(self, reason: str) -> None:
        """Fail closed: no new orders until an operator looks and presses Start."""
        self.state, self.detail = TradingState.FAILED, reason
        self.error(reason)
        starting, self.starting = self.starting, []
        for cmd in starting:
            self.finish(cmd, False, reason)

    def finish(self, cmd: Command, ok: bool, message: str) -> None:
        """Answer a command and write it with its outcome to the audit log."""
        self.journal.write(
            audit.record,
            cmd.actor,
            f"engine_{cmd.kind.value}",
            ok=ok,
            message=message,
            account=self.account,
        )
        self.after_commit(lambda: cmd.finish(ok, message))
        self.changed = True

    def after_commit(self, done: Callable[[], None]) -> None:
        """Run `done` once the open batch is committed (at once outside a batch): the
        caller waiting on a command hears its outcome only when it is on record."""
        if self._held is None:
            done()
        else:
            self._after.append(done)

    # --- which leg a broker id or tag belongs to ----------------------------------------

    def work(self, key: LegKey) -> LegWork | None:
        ls = self.ladders.get(key[0])
        return None if ls is None else ls.work.get(key[1])

    def index(self, work: LegWork) -> None:
        key = (work.symbol, work.position)
        for tag in (work.entry_tag, work.exit_tag):
            if tag:
                self.by_tag[tag] = key
        for order_id in (work.entry_order_id, work.exit_order_id):
            if order_id:
                self.by_order_id[order_id] = key
        if work.gtt_id is not None:
            self.by_gtt_id[work.gtt_id] = key

    def unindex(self, work: LegWork) -> None:
        for tag in (work.entry_tag, work.exit_tag):
            self.by_tag.pop(tag or "", None)
        for order_id in (work.entry_order_id, work.exit_order_id):
            self.by_order_id.pop(order_id or "", None)
        if work.gtt_id is not None:
            self.by_gtt_id.pop(work.gtt_id, None)

    def remember_order(self, order: Order) -> None:
        """An update of an order not (yet) known as ours: perhaps a fired GTT's."""
        self.recent_orders[order.order_id] = order
        if len(self.recent_orders) > 500:
            self.recent_orders.pop(next(iter(self.recent_orders)))
