"""Exits, cancel-first: delete the leg's GTT, sell only once it is confirmed gone, never twice.

STRATEGY.md: when the engine's stop is hit, first cancel the leg's GTT; only if the
cancel confirms the GTT was still active, sell; if it had already triggered, wait for
its order instead. An exit LIMIT order still open after `exit_timeout_s` becomes a
MARKET order. The emergency stop runs the same flow with MARKET sells, urgent broker
calls and no dependence on prices arriving. A mixin of Trader (trader.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from Webapp.broker.base import (
    BrokerError,
    Gtt,
    GttState,
    Order,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
    new_tag,
    round_down_to_tick,
)
from Webapp.broker.charges import order_charges
from Webapp.execution import gateway as gw
from Webapp.execution.slots import GttWork, LadderSlot, LegSlot
from Webapp.execution.trading_view import TradingState
from Webapp.states import ExitReason, IllegalTransition, LegState, OrderIntentState
from Webapp.storage import trading_exits, trading_gtts, trading_store
from Webapp.strategy.ladder import STOP_REASONS

if TYPE_CHECKING:
    from Webapp.execution.trader import Trader

RETRY_AFTER = timedelta(seconds=5)
GONE = frozenset(
    {GttState.DELETED, GttState.CANCELLED, GttState.EXPIRED, GttState.DISABLED, GttState.REJECTED}
)


class ExitFlow:
    """Exit handling for Trader; every method runs on the engine thread."""

    # --- deciding an exit ----------------------------------------------------------------

    def exit_leg(
        self: Trader, ls: LadderSlot, position: int, reason: ExitReason, ltp: float | None
    ) -> None:
        """Start the exit of one leg: write PENDING_EXIT (GTT DELETING), then delete the GTT."""
        slot = ls.legs.get(position)
        if slot is None:
            return
        leg = ls.leg(position)
        emergency = reason is ExitReason.EMERGENCY
        if not self.trading and not emergency:
            return
        if leg.state is LegState.PENDING_ENTRY:
            if emergency and slot.entry_order_id:
                order_id = slot.entry_order_id
                self.send(
                    lambda i: gw.CancelOrder(i, order_id),
                    lambda _v, _at: None,
                    lambda err, _a: self.error(
                        f"{ls.symbol} P{position}: cancel of the buy failed: {err.message}"
                    ),
                    urgent=True,
                )
            return
        if leg.state is LegState.PENDING_EXIT:
            if emergency:
                self.hurry(ls, slot)
            return
        if leg.state not in (LegState.PROTECTING, LegState.OPEN):
            return
        if slot.gtt_work == GttWork.PLACING:
            slot.exit_wanted = reason  # decided once the placement's fate is known
            return
        try:
            self.write(trading_exits.exit_intent, slot.trade_id, reason, now=self.now())
        except IllegalTransition as exc:
            self.error(f"{ls.symbol} P{position}: exit refused: {exc}")
            return
        ls.set_state(position, LegState.PENDING_EXIT, exit_reason=reason)
        if slot.gtt_id is not None and slot.gtt_row_id is not None:
            slot.gtt_work = GttWork.DELETING
            self.delete_gtt(ls, position, urgent=emergency)
        else:
            slot.gtt_work = None
            self.sell(ls, position)

    def delete_gtt(self: Trader, ls: LadderSlot, position: int, *, urgent: bool) -> None:
        slot = ls.legs[position]
        gtt_id = slot.gtt_id
        assert gtt_id is not None

        def deleted(state: GttState, at: datetime) -> None:
            if state is GttState.TRIGGERED:
                self.send(
                    lambda i: gw.FetchGtt(i, gtt_id),
                    lambda g, at2: self.gtt_truth(ls, position, g, at2),
                    lambda err, _a: self.gtt_truth(ls, position, None, at, unknown=err.message),
                )
            else:
                self.gtt_gone(ls, position, at)

        def failed(error: BrokerError, _ambiguous: bool) -> None:
            # Whatever happened, the broker's own view of the GTT decides the next step.
            self.error(
                f"{ls.symbol} P{position}: GTT delete failed: {error.message}; "
                "checking the GTT at the broker"
            )
            self.send(
                lambda i: gw.FetchGtt(i, gtt_id),
                lambda g, at: self.gtt_truth(ls, position, g, at),
                lambda err, _a: self.gtt_truth(ls, position, None, self.now(), unknown=err.message),
            )

        self.send(lambda i: gw.DeleteGtt(i, gtt_id), deleted, failed, urgent=urgent)

    def gtt_gone(self: Trader, ls: LadderSlot, position: int, at: datetime) -> None:
        """The GTT of an exiting leg is confirmed deleted while active: now sell."""
        slot = ls.legs[position]
        if slot.gtt_row_id is None and slot.gtt_work is None:
            return  # already settled by an earlier answer about the same delete
        if slot.gtt_row_id is not None:
            self.write(trading_gtts.gtt_deleted, slot.gtt_row_id, now=at)
        self._clear_gtt(slot)
        self.sell(ls, position)

    def _clear_gtt(self: Trader, slot: LegSlot) -> None:
        if slot.gtt_id is not None:
            self._by_gtt_id.pop(slot.gtt_id, None)
        slot.gtt_row_id = slot.gtt_id = slot.gtt_work = None
        slot.pending_modify = slot.pending_place = None
        slot.gtt_unknown = False

    # --- what the broker says about a GTT -------------------------------------------------

    def gtt_truth(
        self: Trader,
        ls: LadderSlot,
        position: int,
        gtt: Gtt | None,
        at: datetime,
        *,
        unknown: str | None = None,
    ) -> None:
        """Settle the leg's GTT row against the broker's view of it (`gtt` None: not there)."""
        slot = ls.legs.get(position)
        if slot is None or self.ladders.get(ls.symbol) is not ls or slot.gtt_row_id is None:
            return
        self.changed = True
        if unknown is not None:
            self.error(f"{ls.symbol} P{position}: GTT state unknown ({unknown}); will look again")
            slot.gtt_unknown = True
            self.retry_sync_at = self.now() + RETRY_AFTER
            return
        row_id, work = slot.gtt_row_id, slot.gtt_work
        state = None if gtt is None else gtt.state
        if state is None or state in GONE:
            if work == GttWork.DELETING:
                self.gtt_gone(ls, position, at)
                return
            if work == GttWork.MODIFYING:
                self.write(trading_gtts.gtt_modify_failed, row_id, now=at, message="GTT gone")
            self.write(
                trading_gtts.gtt_vanished,
                row_id,
                now=at,
                message=f"not active at the broker ({state or 'missing'})",
            )
            self._clear_gtt(slot)
            self.error(
                f"{ls.symbol} P{position}: GTT no longer at the broker "
                f"({state or 'missing'}); placing a new one"
            )
            return
        if state is GttState.TRIGGERED:
            self._gtt_fired(ls, position, gtt, at)
            return
        # ACTIVE at the broker.
        if work == GttWork.DELETING:
            self.delete_gtt(ls, position, urgent=self.state is TradingState.EMERGENCY)
        elif work == GttWork.MODIFYING:
            modify = slot.pending_modify
            slot.gtt_work, slot.pending_modify = None, None
            if modify is not None and _same(gtt.triggers, modify.triggers):
                self.write(trading_gtts.gtt_modified, row_id, now=at)
                leg = ls.leg(position)
                if leg.state is LegState.OPEN:
                    ls.set_state(
                        position,
                        LegState.OPEN,
                        gtt_stop=modify.stop,
                        gtt_target=modify.target,
                        gtt_changed_at=at,
                    )
            else:
                self.write(
                    trading_gtts.gtt_modify_failed,
                    row_id,
                    now=at,
                    message="the broker kept the old triggers",
                )

    def _gtt_fired(self: Trader, ls: LadderSlot, position: int, gtt: Gtt, at: datetime) -> None:
        """The GTT triggered at the broker: its own order sells the leg; never sell again."""
        slot = ls.legs[position]
        result = gtt.results[0] if gtt.results else None
        if result is not None:
            index = result.leg
        else:
            ltp = self.ltp.get(ls.symbol)
            index = 1 if len(gtt.triggers) > 1 and ltp is not None and ltp >= gtt.triggers[1] else 0
        if not slot.gtt_triggered:
            assert slot.gtt_row_id is not None
            self.write(trading_gtts.gtt_triggered, slot.gtt_row_id, index, now=at)
            reason = ExitReason.TARGET if index == 1 else ExitReason.STOP_GTT
            ls.set_state(position, LegState.PENDING_EXIT, exit_reason=reason)
            slot.gtt_triggered = True
            slot.gtt_work = None
            slot.pending_modify = None
        if result is not None and not result.order_id and result.status == "failed":
            # Kite fired the GTT but refused its sell (e.g. a price outside the circuit
            # band): no order exists, so nothing will ever sell the leg but us.
            reason = result.rejection_reason or "no reason given"
            self.gtt_sell_failed(ls, slot, f"the broker refused it: {reason}", at)
            return
        if result is not None and result.order_id and slot.gtt_order_id is None:
            slot.gtt_order_id = result.order_id
            self._by_order_id[result.order_id] = slot
            seen = self._recent_orders.pop(result.order_id, None)
            if seen is not None:
                self.gtt_order_update(slot, seen, at)

    def gtt_order_update(self: Trader, slot: LegSlot, order: Order, at: datetime) -> None:
        ls = self.ladders.get(slot.symbol)
        if ls is None or ls.leg(slot.position).state is not LegState.PENDING_EXIT:
            return
        if order.state is OrderState.FILLED:
            self.leg_sold(
                ls, slot, order.average_price, order.filled_quantity, at, None, order.order_id
            )
        elif order.state.is_final and order.filled_quantity == 0:
            self._by_order_id.pop(order.order_id, None)
            message = order.status_message or order.state.value
            self.gtt_sell_failed(ls, slot, f"it ended unfilled ({message})", at)
        elif order.state.is_final:
            self.fail(
                f"{ls.symbol} P{slot.position}: the GTT's sell filled "
                f"{order.filled_quantity} of {order.quantity} and ended; partial exits "
                "are not handled: sell the rest by hand, then start again"
            )
        elif slot.gtt_order_open_since is None:
            slot.gtt_order_open_since = at

    def gtt_sell_failed(
        self: Trader, ls: LadderSlot, slot: LegSlot, why: str, at: datetime
    ) -> None:
        """A fired GTT sold nothing: the leg is unprotected, so the engine sells it at market,
        once (the cancel-first rule holds: the GTT is no longer active)."""
        assert slot.gtt_row_id is not None
        self.write(trading_gtts.gtt_order_failed, slot.gtt_row_id, now=at, message=why[:255])
        self._clear_gtt(slot)
        slot.gtt_triggered, slot.gtt_order_id = False, None
        self.error(f"{ls.symbol} P{slot.position}: the GTT fired but {why}; selling at market")
        self.sell(ls, slot.position, OrderType.MARKET)

    # --- our own sell ----------------------------------------------------------------------

    def sell(
        self: Trader, ls: LadderSlot, position: int, order_type: OrderType | None = None
    ) -> None:
        """Write the sell (PENDING, with a tag), then place it; LIMIT just under LTP, or
        MARKET in an emergency or without a price."""
        if not self.trading:
            return
        slot = ls.legs[position]
        leg = ls.leg(position)
        if leg.state is not LegState.PENDING_EXIT or slot.exit_tag is not None:
            return
        emergency = leg.exit_reason is ExitReason.EMERGENCY or self.state is TradingState.EMERGENCY
        ltp = self.ltp.get(ls.symbol)
        if order_type is None:
            order_type = OrderType.MARKET if emergency or ltp is None else OrderType.LIMIT
        price = None
        if order_type is OrderType.LIMIT:
            assert ltp is not None
            price = round_down_to_tick(ltp * (1 - self.params.gtt.limit_buffer_pct / 100))
        tag = new_tag("X")
        purpose = "emergency" if emergency else "exit"
        try:
            self.write(
                trading_exits.sell_intent,
                slot.trade_id,
                tag,
                now=self.now(),
                order_type=order_type.value,
                price=price,
                purpose=purpose,
            )
        except IllegalTransition as exc:
            self.error(f"{ls.symbol} P{position}: sell refused: {exc}")
            slot.sell_retry_at = self.now() + RETRY_AFTER
            return
        slot.exit_tag, slot.exit_order_id = tag, None
        slot.exit_order_type, slot.exit_sent_at = order_type.value, self.now()
        slot.to_market_sent = False
        self._by_tag[tag] = slot
        request = OrderRequest(ls.symbol, Side.SELL, leg.qty, order_type, tag, price)
        self.note_order(slot, tag, Side.SELL, order_type.value, leg.qty, price, "pending", purpose)

        def failed(error: BrokerError, ambiguous: bool) -> None:
            if ambiguous:
                self.error(
                    f"{ls.symbol} P{position}: sell reply lost ({error.message}); "
                    "looking it up by tag"
                )
                self.find_by_tag(slot, tag)
            else:
                self.sell_not_filled(slot, tag, OrderIntentState.REJECTED, error.message)

        self.send(
            lambda i: gw.PlaceOrder(i, request),
            lambda o, at: self.order_seen(o, at),
            failed,
            urgent=emergency,
        )

    def sell_not_filled(
        self: Trader, slot: LegSlot, tag: str, state: OrderIntentState, message: str
    ) -> None:
        """Our sell ended with nothing sold: the leg stays PENDING_EXIT and is sold again."""
        if slot.exit_tag != tag:
            return
        self.write(
            trading_exits.exit_order_not_filled,
            tag,
            now=self.now(),
            order_state=state,
            message=message[:255],
        )
        self._by_tag.pop(tag, None)
        if slot.exit_order_id:
            self._by_order_id.pop(slot.exit_order_id, None)
        slot.exit_tag = slot.exit_order_id = None
        slot.sell_retry_at = self.now() + RETRY_AFTER
        self.error(
            f"{slot.symbol} P{slot.position}: sell {state.value}: {message}; "
            "selling again at market shortly"
        )

    def exit_update(self: Trader, slot: LegSlot, order: Order, at: datetime) -> None:
        ls = self.ladders.get(slot.symbol)
        if ls is None or ls.leg(slot.position).state is not LegState.PENDING_EXIT:
            return
        tag = slot.exit_tag
        assert tag is not None
        if slot.exit_order_id is None:
            slot.exit_order_id = order.order_id
            self._by_order_id[order.order_id] = slot
            if order.state is not OrderState.FILLED:
                self.write(trading_store.mark_order_sent, tag, order.order_id, now=at)
        if order.state is OrderState.FILLED:
            self.leg_sold(
                ls, slot, order.average_price, order.filled_quantity, at, tag, order.order_id
            )
        elif order.state.is_final and order.filled_quantity == 0:
            self.sell_not_filled(
                slot,
                tag,
                OrderIntentState(order.state.value),
                order.status_message or order.state.value,
            )
        elif order.state.is_final:
            self.fail(
                f"{ls.symbol} P{slot.position}: sell {tag} filled {order.filled_quantity}"
                f" of {order.quantity} and ended; partial exits are not handled: sell "
                "the rest by hand, then start again"
            )

    def leg_sold(
        self: Trader,
        ls: LadderSlot,
        slot: LegSlot,
        price: float,
        qty: int,
        at: datetime,
        tag: str | None,
        order_id: str | None,
    ) -> None:
        """Record the sale with P&L and charges; the ladder closes with its last leg."""
        leg = ls.leg(slot.position)
        rates = self.params.charges
        charges = order_charges(Side.BUY, qty, leg.entry_price, rates) + order_charges(
            Side.SELL, qty, price, rates, dp_applies=ls.symbol not in self.dp_billed
        )
        self.dp_billed.add(ls.symbol)
        self.write(
            trading_exits.record_exit_fill,
            slot.trade_id,
            price,
            qty,
            at,
            charges.total,
            tag=tag,
            broker_order_id=order_id,
        )
        gross = (price - leg.entry_price) * qty
        self.realised_gross += gross
        self.charges_today += charges.total
        self.realised_net += gross - charges.total
        ls.set_state(slot.position, LegState.CLOSED, exit_price=price, exit_time=at)
        if leg.exit_reason in STOP_REASONS:
            ls.ladder.stopped_out = True
        self.note_order(
            slot,
            tag,
            Side.SELL,
            slot.exit_order_type or "LIMIT",
            qty,
            price,
            "filled",
            "gtt"
            if tag is None
            else ("emergency" if leg.exit_reason is ExitReason.EMERGENCY else "exit"),
        )
        self.forget_leg(slot)
        if ls.finished:
            self.ladder_closed(ls, at)
        self.emergency_progress()

    # --- the clock's part: timeouts and retries ---------------------------------------------

    def check_exits(self: Trader, now: datetime) -> None:
        timeout = timedelta(seconds=self.params.exit_timeout_s)
        for ls in list(self.ladders.values()):
            for position, slot in list(ls.legs.items()):
                if ls.leg(position).state is not LegState.PENDING_EXIT:
                    continue
                if slot.to_market_sent:
                    continue
                if (
                    slot.exit_order_id
                    and slot.exit_order_type == OrderType.LIMIT.value
                    and slot.exit_sent_at
                    and now - slot.exit_sent_at >= timeout
                ):
                    self.to_market(ls, slot, slot.exit_order_id, slot.exit_tag)
                elif (
                    slot.gtt_order_id
                    and slot.gtt_order_open_since
                    and now - slot.gtt_order_open_since >= timeout
                ):
                    self.to_market(ls, slot, slot.gtt_order_id, None)
                elif (
                    slot.exit_tag is None
                    and not slot.gtt_triggered
                    and slot.gtt_row_id is None
                    and slot.gtt_work is None
                    and (slot.sell_retry_at is None or now >= slot.sell_retry_at)
                ):
                    self.sell(ls, position, OrderType.MARKET if slot.sell_retry_at else None)
                elif slot.gtt_triggered and slot.gtt_order_id is None:
                    self.sync_gtts()  # learn which order the fired GTT placed
        if self.retry_sync_at is not None and now >= self.retry_sync_at:
            self.retry_sync_at = None
            self.sync_gtts()

    def hurry(self: Trader, ls: LadderSlot, slot: LegSlot) -> None:
        """Emergency on a leg already exiting: its open LIMIT sell becomes a MARKET order."""
        if slot.to_market_sent:
            return
        if slot.exit_order_id and slot.exit_order_type == OrderType.LIMIT.value:
            self.to_market(ls, slot, slot.exit_order_id, slot.exit_tag, urgent=True)
        elif slot.gtt_order_id:
            self.to_market(ls, slot, slot.gtt_order_id, None, urgent=True)

    def to_market(
        self: Trader,
        ls: LadderSlot,
        slot: LegSlot,
        order_id: str,
        tag: str | None,
        *,
        urgent: bool = False,
    ) -> None:
        """Modify an open exit order to MARKET (the broker adds Kite's market protection)."""
        slot.to_market_sent = True

        def done(_value: object, at: datetime) -> None:
            if tag is None or slot.exit_tag != tag:
                return
            if ls.leg(slot.position).state is not LegState.PENDING_EXIT:
                return  # the order filled (its update came first) before this reply
            self.write(trading_store.record_order_modified, tag, "MARKET", None, now=at)
            slot.exit_order_type = OrderType.MARKET.value

        def failed(error: BrokerError, _ambiguous: bool) -> None:
            if (
                self.ladders.get(ls.symbol) is ls
                and slot.position in ls.legs
                and (ls.leg(slot.position).state is LegState.PENDING_EXIT)
            ):
                slot.to_market_sent = False  # tried again on the next timer tick
                self.error(
                    f"{ls.symbol} P{slot.position}: exit order to market failed: {error.message}"
                )

        self.send(
            lambda i: gw.ModifyOrder(i, order_id, order_type=OrderType.MARKET),
            done,
            failed,
            urgent=urgent,
        )


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))
