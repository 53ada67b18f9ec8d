"""Start-up reconciliation: the app DB against the broker, before the engine trades (fail closed).

STRATEGY.md "Restart and reconciliation": load the open ladders (each leg's stage from
its rows: what it was waiting for when the process stopped), read the broker's orders,
GTTs, positions and holdings, then hand every leg the broker's answer as an event:
- a buy or sell in flight is looked up by its tag (found: its state applies; not
  found: it never reached the broker);
- a GTT being placed is looked for among the GTTs with its terms; a GTT that fired
  while the app was down closes its leg with the real fill (or, if its order failed,
  the leg is sold); one that vanished is replaced; a modify or delete in flight is
  settled by the GTT as the broker holds it;
- a filled buy carrying one of our tags but no leg row becomes a leg;
- a leg without an active GTT gets one (on its first price).
Anything it cannot explain (an acknowledged order the broker does not know, fewer shares
at the broker than the legs hold) stops the engine in FAILED with the reason on screen.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from Webapp.broker.base import (
    Gtt,
    GttState,
    Holding,
    Order,
    OrderState,
    Position,
    Side,
    shares_held,
)
from Webapp.execution import gateway as gw
from Webapp.execution import leg_events as ev
from Webapp.execution.desk import Desk, LadderSlot, LegKey, Route
from Webapp.execution.leg_lifecycle import FINAL, LegWork, Stage
from Webapp.execution.trading_view import TradingState
from Webapp.market.calendar import IST
from Webapp.states import ExitReason, GttIntentState, LadderState, LegState, OrderIntentState
from Webapp.storage import ladders
from Webapp.storage.ladders import open_ladders, todays_realised_pnl
from Webapp.storage.trading_models import LIVE_GTT_STATES, Trade, TradeGtt, TradeOrder
from Webapp.storage.trading_models import Ladder as LadderRow
from Webapp.strategy.actions import ModifyGtt, PlaceGtt
from Webapp.strategy.ladder import Ladder, Leg, on_fill

ENTRY_TAG = re.compile(r"^E[0-9a-f]{16}$")  # new_tag("E"): our buys
READS = ("orders", "gtts", "positions", "holdings")
Handle = Callable[[LegKey, ev.Event], None]
OrderSeen = Callable[[Order, datetime], None]
LegIntent = Callable[..., Trade]


class Reconciliation:
    """Loads the desk from the app DB and settles it against the broker's view."""

    def __init__(
        self, desk: Desk, handle: Handle, order_seen: OrderSeen, leg_intent: LegIntent
    ) -> None:
        self.desk = desk
        self.handle = handle
        self.order_seen = order_seen
        self.leg_intent = leg_intent
        self._parts: dict[str, Any] | None = None

    # --- loading ------------------------------------------------------------------------

    def load_from_db(self) -> None:
        """Open ladders, cooldowns and today's P&L as the app DB holds them."""
        desk = self.desk

        def load(session: Session) -> list[tuple[str, datetime | None]]:
            rows = open_ladders(session, desk.account)
            now = desk.now()
            for row in rows:
                if not row.legs:  # a crash between open_ladder and its first leg
                    ladders.abandon_ladder(session, row.id, now=now)
            closed = session.execute(
                select(LadderRow.symbol, func.max(LadderRow.closed_at))
                .where(
                    LadderRow.account == desk.account,
                    LadderRow.state == LadderState.CLOSED.value,
                )
                .group_by(LadderRow.symbol)
            ).all()
            desk.ladders = {}
            for row in rows:
                ls = ladder_slot_from_row(row)
                if ls is not None:
                    desk.ladders[ls.symbol] = ls
            return closed

        closed = desk.journal.write(load)
        desk.last_closed = {symbol: at for symbol, at in closed if at is not None}
        desk.by_tag.clear()
        desk.by_order_id.clear()
        desk.by_gtt_id.clear()
        for ls in desk.ladders.values():
            for work in ls.work.values():
                desk.index(work)
        desk.day = desk.calendar.session_date(desk.now())
        self.load_day_pnl(desk.now())

    def load_day_pnl(self, now: datetime) -> None:
        """Today's (IST) realised P&L and the symbols already sold today (DP charge)."""
        desk = self.desk
        day = desk.calendar.session_date(now)
        start = datetime(day.year, day.month, day.day, tzinfo=IST)
        with desk.sessions() as session:
            pnl = todays_realised_pnl(session, desk.account, start)
            sold = session.scalars(
                select(Trade.symbol)
                .join(LadderRow)
                .where(
                    LadderRow.account == desk.account,
                    Trade.status == LegState.CLOSED.value,
                    Trade.exit_time >= start,
                )
            ).all()
        desk.realised_gross, desk.charges_today, desk.realised_net = (
            pnl.gross,
            pnl.charges,
            pnl.net,
        )
        desk.dp_billed = set(sold)

    # --- the broker's view --------------------------------------------------------------

    def start(self) -> None:
        """Enter RECONCILING and ask the gateway for the four broker reads."""
        desk = self.desk
        desk.state, desk.detail = TradingState.RECONCILING, "reconciling with the broker"
        desk.changed = True
        self.load_from_db()
        desk.reconcile_notes = {}
        self._parts = {}
        requests = {
            "orders": gw.ReconcileOrders,
            "gtts": gw.ReconcileGtts,
            "positions": gw.ReconcilePositions,
            "holdings": gw.ReconcileHoldings,
        }
        for name, make in requests.items():
            desk.send(lambda i, make=make: make(i), Route("reconcile", part=name))

    def cancel(self) -> None:
        """A reconciliation under way must not resume trading (the engine failed meanwhile)."""
        self._parts = None

    def answer(self, part: str, result: gw.Result) -> bool | str | None:
        """One read came back. Returns None while reads are missing; then True when the
        engine may trade, or the reason it may not."""
        parts = self._parts
        if parts is None:
            return None
        if isinstance(result, gw.Failed):
            self._parts = None
            return (
                f"could not reconcile with the broker: reading {part} failed: "
                f"{result.error.message}. Fix the broker connection, then press Start."
            )
        parts[part] = result.value
        if not all(key in parts for key in READS):
            return None
        self._parts = None
        try:
            problems = self.reconcile(
                parts["orders"], parts["gtts"], parts["positions"], parts["holdings"]
            )
        except Exception as exc:  # an IllegalTransition, a DB error: never trade on it
            return f"reconciliation stopped: {type(exc).__name__}: {exc}"
        if problems:
            return "reconciliation found what it cannot explain: " + "; ".join(problems)
        return True

    def reconcile(
        self,
        orders: list[Order],
        gtts: list[Gtt],
        positions: list[Position],
        holdings: list[Holding],
    ) -> list[str]:
        """Settle every leg's work in flight against the broker's view; return what cannot be."""
        desk = self.desk
        now = desk.now()
        problems: list[str] = []
        by_tag = {o.tag: o for o in orders if o.tag}
        by_id = {o.order_id: o for o in orders}
        gtt_by_id = {g.gtt_id: g for g in gtts}
        for g in gtts:  # a fired GTT's order is ours to follow
            for result in g.results:
                if result.order_id and result.order_id in by_id:
                    desk.recent_orders[result.order_id] = by_id[result.order_id]
        self._adopt_unknown_buys(orders, now, problems)
        for ls in list(desk.ladders.values()):
            for position in sorted(ls.work):
                work = desk.work((ls.symbol, position))
                if work is None or desk.ladders.get(ls.symbol) is not ls:
                    continue
                problem = self._settle(work, by_tag, by_id, gtts, gtt_by_id, now)
                if problem:
                    problems.append(problem)
        return problems + self._check_holdings(positions, holdings)

    def _settle(
        self,
        work: LegWork,
        by_tag: dict[str, Order],
        by_id: dict[str, Order],
        gtts: list[Gtt],
        gtt_by_id: dict[int, Gtt],
        now: datetime,
    ) -> str | None:
        key = (work.symbol, work.position)
        stage = work.stage
        if stage is Stage.ENTERING:
            order = by_tag.get(work.entry_tag or "") or by_id.get(work.entry_order_id or "")
            if order is not None:
                self.order_seen(order, now)
            elif work.entry_order_id:
                return (
                    f"{work.name}: buy {work.entry_order_id} was acknowledged but the broker "
                    "does not list it"
                )
            else:
                self.handle(
                    key,
                    ev.BuyEnded(
                        OrderIntentState.CANCELLED,
                        "never reached the broker (tag not found on start)",
                    ),
                )
        elif stage in (Stage.PLACE_CHECK, Stage.PLACE_CHECK_EXIT):
            assert work.terms is not None
            found = matching_gtt(
                gtts, work.symbol, work.terms.qty, work.terms.triggers, set(self.desk.by_gtt_id)
            )
            self.handle(key, ev.GttSeen(found, now))
        elif stage in (Stage.SELLING, Stage.SELLING_MARKET):
            order = by_tag.get(work.exit_tag or "") or by_id.get(work.exit_order_id or "")
            if order is not None:
                self.order_seen(order, now)
            elif work.exit_order_id:
                return (
                    f"{work.name}: sell {work.exit_order_id} was acknowledged but the broker "
                    "does not list it"
                )
            else:
                self.handle(key, ev.SellNotFound(now))
        elif work.gtt_id is not None:
            self.handle(key, ev.GttSeen(gtt_by_id.get(work.gtt_id), now))
            after = self.desk.work(key)
            if after is not None and after.exit_order_id in by_id:
                self.order_seen(by_id[after.exit_order_id], now)
        return None

    def _check_holdings(self, positions: list[Position], holdings: list[Holding]) -> list[str]:
        """Fewer shares at the broker than the legs hold cannot be explained: fail closed.

        More is fine: the account may hold the same scrip outside the strategy.
        """
        broker_qty = shares_held(holdings, positions)
        problems = []
        for ls in self.desk.ladders.values():
            held = [
                (n, ls.leg(n).qty)
                for n, work in ls.work.items()
                if work.stage not in FINAL
                and work.stage is not Stage.ENTERING
                and not (work.stage.value.startswith("gtt_selling") and work.exit_order_id)
            ]
            ours = sum(q for _, q in held)
            if ours > broker_qty.get(ls.symbol, 0):
                legs = ", ".join(f"P{n}" for n, _ in held)
                problems.append(
                    f"{ls.symbol}: legs {legs} hold {ours} shares but the broker "
                    f"shows {broker_qty.get(ls.symbol, 0)}"
                )
        return problems

    def _adopt_unknown_buys(self, orders: list[Order], now: datetime, problems: list[str]) -> None:
        """A filled buy with our tag and no leg row (the DB lost it) becomes a leg again."""
        desk = self.desk
        ours = [o for o in orders if o.tag and ENTRY_TAG.match(o.tag) and o.side is Side.BUY]
        if not ours:
            return
        with desk.sessions() as session:
            known = set(
                session.scalars(
                    select(TradeOrder.tag).where(TradeOrder.tag.in_([o.tag for o in ours]))
                )
            )
        for order in ours:
            if order.tag in known or order.state is not OrderState.FILLED:
                continue
            ls = desk.ladders.get(order.symbol)
            taken = set() if ls is None else set(ls.work)
            position = next((n for n in (1, 2, 3) if n not in taken), None)
            if position is None or (ls is not None and ls.ladder.is_stopped_out):
                problems.append(
                    f"{order.symbol}: filled buy {order.order_id} (tag {order.tag}) "
                    "has no leg and no free place in its ladder"
                )
                continue
            assert order.tag is not None
            filled_at = order.updated_at or now
            leg, _ = on_fill(
                order.symbol,
                position,
                order.filled_quantity,
                order.average_price,
                filled_at,
                desk.params,
            )
            trade = self.leg_intent(ls, order.symbol, position, order.quantity, order.tag, now)
            desk.journal.order_sent(order.tag, order.order_id, now)
            desk.journal.entry_filled(
                trade.trade_id,
                order.average_price,
                order.filled_quantity,
                filled_at,
                stop=leg.stop,
                target=leg.target,
                order_id=order.order_id,
            )
            message = (
                f"{order.symbol}: filled buy {order.order_id} had no leg; recorded as "
                f"P{position} and protecting it"
            )
            desk.error(message)
            desk.reconcile_notes[(order.symbol, position)] = message
            self.load_from_db()


def matching_gtt(
    gtts: list[Gtt],
    symbol: str,
    qty: int,
    triggers: tuple[float, ...],
    claimed: set[int],
) -> Gtt | None:
    """A broker GTT (active, or fired since) with these terms that no leg claims yet."""
    for g in gtts:
        if (
            g.state in (GttState.ACTIVE, GttState.TRIGGERED)
            and g.symbol == symbol
            and g.quantity == qty
            and g.gtt_id not in claimed
            and tuple(round(t, 2) for t in g.triggers) == tuple(round(t, 2) for t in triggers)
        ):
            return g
    return None


# --- a leg's work from its rows ---------------------------------------------------------------


def live_gtt(trade: Trade) -> TradeGtt | None:
    """The trade's GTT row that may exist at the broker, or a TRIGGERED one, if any."""
    live = [g for g in trade.gtts if g.state in LIVE_GTT_STATES]
    if live:
        return live[-1]
    fired = [g for g in trade.gtts if g.state == GttIntentState.TRIGGERED.value]
    return fired[-1] if fired else None


def _terms(symbol: str, trade: Trade, row: TradeGtt, pending: bool) -> PlaceGtt | ModifyGtt:
    """The terms of a GTT call that was in flight (a placement, or a modify's new prices)."""
    triggers = tuple(row.pending_triggers or row.triggers) if pending else tuple(row.triggers)
    limits = (
        tuple(row.pending_limit_prices or row.limit_prices) if pending else tuple(row.limit_prices)
    )
    kind = ModifyGtt if pending else PlaceGtt
    return kind(
        symbol=symbol,
        leg=trade.position_number,
        qty=row.qty,
        stop=triggers[0],
        target=triggers[1] if len(triggers) > 1 else None,
        limit_prices=limits,
        last_price=0.0,
    )


def work_from_row(trade: Trade) -> LegWork:
    """What the leg was waiting for when the process stopped, from its rows."""
    base = LegWork(
        symbol=trade.symbol,
        position=trade.position_number,
        trade_id=trade.trade_id,
        stage=Stage.ENTERING,
        entry_tag=trade.entry_tag,
        exit_reason=ExitReason(trade.exit_reason) if trade.exit_reason else None,
    )
    exit_order = None
    for order in trade.orders:
        if order.side == "BUY":
            base = replace(base, entry_order_id=order.broker_order_id)
        elif order.tag == trade.exit_tag:
            exit_order = order
    status = LegState(trade.status)
    if status is LegState.PENDING_ENTRY:
        return base
    gtt = live_gtt(trade)
    state = GttIntentState(gtt.state) if gtt is not None else None
    if gtt is not None:
        base = replace(base, gtt_row_id=gtt.id, gtt_id=gtt.broker_gtt_id)
    if state is GttIntentState.TRIGGERED:
        return replace(base, stage=Stage.GTT_SELLING)
    if state is GttIntentState.PENDING:
        assert gtt is not None
        terms = _terms(trade.symbol, trade, gtt, pending=False)
        exiting = status is LegState.PENDING_EXIT
        stage = Stage.PLACE_CHECK_EXIT if exiting else Stage.PLACE_CHECK
        return replace(base, stage=stage, terms=terms)
    if status is LegState.PENDING_EXIT:
        if state is not None:  # DELETING (or an exit written just before its delete)
            return replace(base, stage=Stage.DELETE_CHECK)
        if exit_order is not None and trade.exit_tag:
            market = exit_order.order_type == "MARKET"
            return replace(
                base,
                stage=Stage.SELLING_MARKET if market else Stage.SELLING,
                exit_tag=trade.exit_tag,
                exit_order_id=exit_order.broker_order_id,
                exit_since=exit_order.updated_at,
            )
        return replace(base, stage=Stage.SELL_RETRY)
    if state is GttIntentState.MODIFYING:
        assert gtt is not None
        return replace(
            base, stage=Stage.MODIFY_CHECK, terms=_terms(trade.symbol, trade, gtt, pending=True)
        )
    if state is GttIntentState.ACTIVE:
        return replace(base, stage=Stage.PROTECTED)
    return replace(base, stage=Stage.UNPROTECTED, gtt_row_id=None, gtt_id=None)


def leg_from_row(trade: Trade, work: LegWork) -> Leg:
    """The rules' view of a trades row (a pending entry has no price yet: 0 until it fills)."""
    gtt = live_gtt(trade)
    active = gtt is not None and gtt.state != GttIntentState.PENDING.value
    triggers = list(gtt.triggers) if active and gtt is not None else []
    entry = trade.entry_price or 0.0
    return Leg(
        position_number=trade.position_number,
        qty=trade.qty,
        entry_price=entry,
        entry_time=trade.entry_time or trade.created_at,
        high=trade.high or entry,
        # Stops are saved at most once a second; the GTT's trigger is a floor for it.
        stop=max(trade.stop_loss or 0.0, triggers[0] if triggers else 0.0),
        target=trade.target,
        sl_pct=trade.sl_pct,
        state=work.leg_state,
        gtt_stop=triggers[0] if triggers else None,
        gtt_target=triggers[1] if len(triggers) > 1 else None,
        gtt_changed_at=gtt.last_change_at if active and gtt is not None else None,
        exit_price=trade.exit_price,
        exit_time=trade.exit_time,
        exit_reason=ExitReason(trade.exit_reason) if trade.exit_reason else None,
    )


def ladder_slot_from_row(row: LadderRow) -> LadderSlot | None:
    """The ladder as the engine holds it, or None when none of its legs is live."""
    trades = [t for t in row.legs if t.status not in (LegState.CANCELLED, LegState.CLOSED)]
    closed = [t for t in row.legs if t.status == LegState.CLOSED.value]
    if not trades:
        return None
    works = {t.position_number: work_from_row(t) for t in trades}
    legs = [leg_from_row(t, works[t.position_number]) for t in trades]
    for t in closed:
        legs.append(
            leg_from_row(t, LegWork(t.symbol, t.position_number, t.trade_id, stage=Stage.CLOSED))
        )
    legs.sort(key=lambda g: g.position_number)
    ladder = Ladder(
        symbol=row.symbol,
        legs=legs,
        state=LadderState(row.state),
        stopped_out=row.stopped_out,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
    )
    slot = LadderSlot(ladder_id=row.id, ladder=ladder, work=works)
    for t in closed:
        slot.work[t.position_number] = LegWork(
            t.symbol, t.position_number, t.trade_id, stage=Stage.CLOSED
        )
    return slot


# --- what reconciliation did, in a trader's words -------------------------------------------

_NOTES = {
    Stage.CANCELLED: "its buy never filled at the broker: the leg is cancelled",
    Stage.UNPROTECTED: "its GTT is not at the broker: a new one is placed on the next price",
    Stage.GTT_SELLING: "its GTT fired while the app was away: waiting for the GTT's own sell",
    Stage.SELL_RETRY: "its sell never reached the broker: the engine sells it again",
    Stage.DELETING: "its GTT was still active: deleting it before the exit's sell",
}


def reconcile_note(old: LegWork, new: LegWork, leg: Leg | None) -> str | None:
    """One line on what settling a leg against the broker did to it, or None (nothing)."""
    if new.stage is old.stage:
        return None
    if new.stage is Stage.CLOSED and leg is not None and leg.exit_price is not None:
        when = leg.exit_time.astimezone(IST).strftime("%d %b %H:%M:%S IST") if leg.exit_time else ""
        reason = leg.exit_reason.value if leg.exit_reason else "sold"
        return (
            f"{new.name}: sold while the app was away, {leg.qty} at {leg.exit_price:.2f} "
            f"on {when} ({reason})"
        )
    if new.stage is Stage.PROTECTED and old.stage in (Stage.PLACE_CHECK, Stage.MODIFY_CHECK):
        return f"{new.name}: its GTT is active at the broker with the triggers on record"
    if old.stage is Stage.ENTERING and new.stage is not Stage.CANCELLED:
        return f"{new.name}: its buy filled while the app was away: protecting it"
    note = _NOTES.get(new.stage)
    return f"{new.name}: {note}" if note else None
