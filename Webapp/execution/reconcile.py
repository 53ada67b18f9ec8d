"""Start-up reconciliation: the app DB against the broker, before the engine trades (fail closed).

STRATEGY.md "Restart and reconciliation": load the open ladders, read the broker's orders,
GTTs, positions and holdings, then settle every intent the DB says may be in flight:
- a buy or sell still PENDING is looked up by its tag (found: its state is applied;
  not found: it never reached the broker and is closed as cancelled);
- a GTT still PENDING is looked for among the active GTTs with its terms; a GTT that
  triggered while the app was down closes its leg with the real fill; one that vanished
  is replaced; a modify or delete in flight is settled by the GTT's current triggers;
- a filled buy carrying one of our tags but no leg row creates the leg;
- a leg without an active GTT gets one (on its first price).
Anything it cannot explain (an acknowledged order the broker does not know, fewer shares
at the broker than the legs hold) stops the engine in FAILED with the reason on screen.
A mixin of Trader (trader.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from Webapp.broker.base import (
    BrokerError,
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
from Webapp.execution.slots import HELD, GttWork, LadderSlot, ladder_slot_from_row
from Webapp.execution.trading_view import TradingState
from Webapp.market.calendar import IST
from Webapp.states import GttIntentState, LadderState, LegState, OrderIntentState
from Webapp.storage import trading_gtts, trading_store
from Webapp.storage.db import transaction
from Webapp.storage.trading_models import Ladder as LadderRow
from Webapp.storage.trading_models import Trade, TradeGtt, TradeOrder
from Webapp.storage.trading_reads import open_ladders, todays_realised_pnl
from Webapp.strategy.actions import ModifyGtt

if TYPE_CHECKING:
    from Webapp.execution.trader import Trader

ENTRY_TAG = re.compile(r"^E[0-9a-f]{16}$")  # new_tag("E"): our buys
READS = ("orders", "gtts", "positions", "holdings")
# A GTT placed just before a crash may have fired before the restart.
FOUND_ON_START = frozenset({GttState.ACTIVE, GttState.TRIGGERED})


def _modify_in_flight(symbol: str, position: int, row: TradeGtt) -> ModifyGtt:
    """The modify a MODIFYING row was written for (its pending prices), so that the
    broker's triggers settle it on start: landed (gtt_modified) or not (modify_failed)."""
    triggers = tuple(row.pending_triggers or row.triggers)
    limits = tuple(row.pending_limit_prices or row.limit_prices)
    return ModifyGtt(
        symbol=symbol,
        leg=position,
        qty=row.qty,
        stop=triggers[0],
        target=triggers[1] if len(triggers) > 1 else None,
        limit_prices=limits,
        last_price=0.0,
    )


class Reconciler:
    """Reconciliation for Trader; runs on the engine thread."""

    def load_from_db(self: Trader) -> None:
        """Open ladders, cooldowns and today's P&L as the app DB holds them."""
        with transaction(self.sessions) as session:
            rows = open_ladders(session, self.account)
            now = self.now()
            for row in rows:
                if not row.legs:  # a crash between open_ladder and its first leg
                    trading_store.abandon_ladder(session, row.id, now=now)
            rows = [row for row in rows if row.legs]
            closed = session.execute(
                select(LadderRow.symbol, func.max(LadderRow.closed_at))
                .where(
                    LadderRow.account == self.account, LadderRow.state == LadderState.CLOSED.value
                )
                .group_by(LadderRow.symbol)
            ).all()
            self.ladders = {}
            for row in rows:
                ls = ladder_slot_from_row(row)
                if ls.finished:
                    continue
                self.ladders[ls.symbol] = ls
                for slot in ls.legs.values():
                    gtt = session.get(TradeGtt, slot.gtt_row_id) if slot.gtt_row_id else None
                    if gtt is not None and gtt.state == GttIntentState.PENDING.value:
                        slot.gtt_work = GttWork.PLACING
                    elif gtt is not None and gtt.state == GttIntentState.MODIFYING.value:
                        slot.gtt_work = GttWork.MODIFYING
                        slot.pending_modify = _modify_in_flight(slot.symbol, slot.position, gtt)
                    elif gtt is not None and gtt.state == GttIntentState.DELETING.value:
                        slot.gtt_work = GttWork.DELETING
        self.last_closed = {symbol: at for symbol, at in closed if at is not None}
        self._by_tag.clear()
        self._by_order_id.clear()
        self._by_gtt_id.clear()
        for ls in self.ladders.values():
            for slot in ls.legs.values():
                self.index_leg(slot)
        self.day = self.calendar.session_date(self.now())
        self.load_day_pnl(self.now())

    def start_reconcile(self: Trader) -> None:
        """Enter RECONCILING and ask the gateway for the four broker reads."""
        self.state, self.detail = TradingState.RECONCILING, "reconciling with the broker"
        self.changed = True
        self.load_from_db()
        self._reconcile_parts = {}
        requests = {
            "orders": gw.ReconcileOrders,
            "gtts": gw.ReconcileGtts,
            "positions": gw.ReconcilePositions,
            "holdings": gw.ReconcileHoldings,
        }
        for name, make in requests.items():
            self.send(
                lambda i, make=make: make(i),
                lambda value, at, name=name: self._reconcile_part(name, value),
                lambda err, _a, name=name: self._reconcile_failed(name, err),
            )

    def _reconcile_failed(self: Trader, name: str, error: BrokerError) -> None:
        if self._reconcile_parts is None:
            return
        self._reconcile_parts = None
        self.fail(
            f"could not reconcile with the broker: reading {name} failed: "
            f"{error.message}. Fix the broker connection, then press Start."
        )

    def _reconcile_part(self: Trader, name: str, value: Any) -> None:
        parts = self._reconcile_parts
        if parts is None:
            return
        parts[name] = value
        if all(key in parts for key in READS):
            self._reconcile_parts = None
            try:
                problems = self.reconcile(
                    parts["orders"], parts["gtts"], parts["positions"], parts["holdings"]
                )
            except Exception as exc:  # an IllegalTransition, a DB error: never trade on it
                self.fail(f"reconciliation stopped: {type(exc).__name__}: {exc}")
                return
            if problems:
                self.fail("reconciliation found what it cannot explain: " + "; ".join(problems))
            else:
                legs = sum(len(ls.live_positions()) for ls in self.ladders.values())
                self.reconciled(
                    f"reconciled with the broker: {len(self.ladders)} ladders, {legs} live legs"
                )

    def reconcile(
        self: Trader,
        orders: list[Order],
        gtts: list[Gtt],
        positions: list[Position],
        holdings: list[Holding],
    ) -> list[str]:
        """Settle every in-flight intent against the broker's view; return what cannot be."""
        now = self.now()
        problems: list[str] = []
        by_tag = {o.tag: o for o in orders if o.tag}
        by_id = {o.order_id: o for o in orders}
        gtt_by_id = {g.gtt_id: g for g in gtts}
        for g in gtts:  # a fired GTT's order is ours to follow
            for result in g.results:
                if result.order_id and result.order_id in by_id:
                    self._recent_orders[result.order_id] = by_id[result.order_id]
        self._adopt_unknown_buys(orders, now, problems)
        for ls in list(self.ladders.values()):
            for position, slot in list(ls.legs.items()):
                if self.ladders.get(ls.symbol) is not ls or position not in ls.legs:
                    continue
                leg = ls.leg(position)
                if leg.state is LegState.PENDING_ENTRY:
                    order = by_tag.get(slot.entry_tag or "") or by_id.get(slot.entry_order_id or "")
                    if order is not None:
                        self.order_seen(order, now)
                    elif slot.entry_order_id:
                        problems.append(
                            f"{ls.symbol} P{position}: buy {slot.entry_order_id} was "
                            "acknowledged but the broker does not list it"
                        )
                    else:
                        self.entry_not_filled(
                            slot,
                            OrderIntentState.CANCELLED,
                            "never reached the broker (tag not found on start)",
                        )
                    continue
                if slot.gtt_work == GttWork.PLACING and slot.gtt_id is None:
                    self._settle_pending_gtt(ls, position, gtts, now)
                elif slot.gtt_id is not None and not slot.gtt_triggered:
                    self.gtt_truth(ls, position, gtt_by_id.get(slot.gtt_id), now)
                elif slot.gtt_triggered:
                    g = gtt_by_id.get(slot.gtt_id) if slot.gtt_id is not None else None
                    if g is not None:
                        self._gtt_fired(ls, position, g, now)
                if slot.exit_tag and ls.leg(position).state is LegState.PENDING_EXIT:
                    order = by_tag.get(slot.exit_tag) or by_id.get(slot.exit_order_id or "")
                    if order is not None:
                        self.order_seen(order, now)
                    elif slot.exit_order_id:
                        problems.append(
                            f"{ls.symbol} P{position}: sell {slot.exit_order_id} was "
                            "acknowledged but the broker does not list it"
                        )
                    else:
                        self.sell_not_filled(
                            slot,
                            slot.exit_tag,
                            OrderIntentState.CANCELLED,
                            "never reached the broker (tag not found on start)",
                        )
        problems += self._check_holdings(positions, holdings)
        return problems

    def _settle_pending_gtt(
        self: Trader, ls: LadderSlot, position: int, gtts: list[Gtt], now: datetime
    ) -> None:
        slot = ls.legs[position]
        assert slot.gtt_row_id is not None
        with self.sessions() as session:
            row = session.get(TradeGtt, slot.gtt_row_id)
            triggers = tuple(row.triggers) if row is not None else ()
        match = self.matching_gtt(
            gtts, ls.symbol, ls.leg(position).qty, triggers, states=FOUND_ON_START
        )
        if match is not None:
            self.gtt_confirmed(ls, position, triggers, match.gtt_id, now)
            if match.state is GttState.TRIGGERED:  # it fired while the app was down
                self._gtt_fired(ls, position, match, now)
        else:
            self.write(
                trading_gtts.gtt_place_failed,
                slot.gtt_row_id,
                now=now,
                message="not at the broker on start",
            )
            slot.gtt_row_id, slot.gtt_work = None, None

    def _check_holdings(
        self: Trader, positions: list[Position], holdings: list[Holding]
    ) -> list[str]:
        """Fewer shares at the broker than the legs hold cannot be explained: fail closed.

        More is fine: the account may hold the same scrip outside the strategy.
        """
        broker_qty = shares_held(holdings, positions)
        problems = []
        for ls in self.ladders.values():
            held = [
                (n, ls.leg(n).qty)
                for n in ls.legs
                if ls.leg(n).state in HELD and not ls.legs[n].gtt_order_id
            ]
            ours = sum(q for _, q in held)
            if ours > broker_qty.get(ls.symbol, 0):
                legs = ", ".join(f"P{n}" for n, _ in held)
                problems.append(
                    f"{ls.symbol}: legs {legs} hold {ours} shares but the broker "
                    f"shows {broker_qty.get(ls.symbol, 0)}"
                )
        return problems

    def _adopt_unknown_buys(
        self: Trader, orders: list[Order], now: datetime, problems: list[str]
    ) -> None:
        """A filled buy with our tag and no leg row (the DB lost it) becomes a leg again."""
        ours = [o for o in orders if o.tag and ENTRY_TAG.match(o.tag) and o.side is Side.BUY]
        if not ours:
            return
        with self.sessions() as session:
            known = set(
                session.scalars(
                    select(TradeOrder.tag).where(TradeOrder.tag.in_([o.tag for o in ours]))
                )
            )
        for order in ours:
            if order.tag in known or order.state is not OrderState.FILLED:
                continue
            ls = self.ladders.get(order.symbol)
            taken = set() if ls is None else set(ls.legs)
            position = next((n for n in (1, 2, 3) if n not in taken), None)
            if position is None or (ls is not None and ls.ladder.is_stopped_out):
                problems.append(
                    f"{order.symbol}: filled buy {order.order_id} (tag {order.tag}) "
                    "has no leg and no free place in its ladder"
                )
                continue
            with transaction(self.sessions) as session:
                trade = self.leg_intent(
                    session, ls, order.symbol, position, order.quantity, order.tag, now
                )
                trading_store.mark_order_sent(session, order.tag, order.order_id, now=now)
                trading_store.record_entry_fill(
                    session,
                    trade.trade_id,
                    order.average_price,
                    order.filled_quantity,
                    order.updated_at or now,
                    broker_order_id=order.order_id,
                )
            self.error(
                f"{order.symbol}: filled buy {order.order_id} had no leg; recorded as "
                f"P{position} and protecting it"
            )
            self.load_from_db()

    def load_day_pnl(self: Trader, now: datetime) -> None:
        """Today's (IST) realised P&L and the symbols already sold today (DP charge)."""
        day = self.calendar.session_date(now)
        start = datetime(day.year, day.month, day.day, tzinfo=IST)
        with self.sessions() as session:
            pnl = todays_realised_pnl(session, self.account, start)
            sold = session.scalars(
                select(Trade.symbol)
                .join(LadderRow)
                .where(
                    LadderRow.account == self.account,
                    Trade.status == LegState.CLOSED.value,
                    Trade.exit_time >= start,
                )
            ).all()
        self.realised_gross, self.charges_today, self.realised_net = pnl.gross, pnl.charges, pnl.net
        self.dp_billed = set(sold)
