"""Carrying out a leg's intents: each write to the app DB before the broker call it guards.

`LegEffects.carry_out` takes one step of the lifecycle (leg_lifecycle.py) and does what
its intents say, in order: Record* intents are written (one committed transaction each,
so a crash between two is recovered from the last one), *Call intents go to the order
gateway with a route that turns their answer into the leg's next event, and the rules'
view of the leg (stop, GTT triggers, state) follows. A sell whose write is refused, or
that may not be sent now, answers at once with the event that says so.
"""

from __future__ import annotations

from dataclasses import replace

from Webapp.broker.base import (
    OrderRequest,
    OrderType,
    Side,
    new_tag,
    round_down_to_tick,
)
from Webapp.broker.charges import order_charges
from Webapp.execution import gateway as gw
from Webapp.execution import leg_events as ev
from Webapp.execution.desk import Desk, LadderSlot, Route
from Webapp.execution.leg_lifecycle import LegWork, Step
from Webapp.execution.trading_view import TradingState
from Webapp.states import ExitReason, IllegalTransition, LegState
from Webapp.strategy.ladder import STOP_REASONS, gtt_placed, on_fill
from Webapp.strategy.pnl import sold_leg_pnl


class LegEffects:
    """The intents of one desk's legs, carried out on the engine thread."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def carry_out(self, ls: LadderSlot, step: Step) -> tuple[LegWork, list[ev.Event]]:
        """Do `step`'s intents for its leg; return the leg's work as they left it and the
        events they answered at once (a sell sent or not sent)."""
        work = step.work
        follow: list[ev.Event] = []
        for intent in step.intents:
            work = self._one(ls, work, intent, follow)
        return work, follow

    def _one(
        self, ls: LadderSlot, work: LegWork, intent: ev.Intent, follow: list[ev.Event]
    ) -> LegWork:
        desk, journal = self.desk, self.desk.journal
        position = work.position
        match intent:
            case ev.ShowError(message):
                desk.error(message)
            case ev.FailClosed(reason):
                desk.fail(reason)
            case ev.RecordOrderSent(tag, order_id, at):
                desk.by_order_id[order_id] = (work.symbol, position)
                journal.order_sent(tag, order_id, at)
            case ev.RecordEntryFill(qty, price, at, order_id):
                leg, _ = on_fill(ls.symbol, position, qty, price, at, desk.params)
                journal.entry_filled(
                    work.trade_id,
                    price,
                    qty,
                    at,
                    stop=leg.stop,
                    target=leg.target,
                    order_id=order_id,
                )
                ls.set_leg(leg)
                desk.note_order(
                    ls.symbol, work.entry_tag, Side.BUY, "MARKET", qty, price, "filled", "entry"
                )
            case ev.RecordEntryCancelled(state, message):
                journal.entry_cancelled(work.trade_id, state, message, desk.now())
                desk.note_order(
                    ls.symbol, work.entry_tag, Side.BUY, "MARKET", 0, None, state.value, "entry",
                    message,
                )  # fmt: skip
            case ev.PlaceGttCall(gtt):
                request = gtt.gtt_request()
                row_id = journal.gtt_intent(
                    work.trade_id,
                    request.gtt_type.value,
                    gtt.triggers,
                    gtt.limit_prices,
                    desk.now(),
                )
                work = replace(work, gtt_row_id=row_id)
                desk.send(lambda i: gw.PlaceGtt(i, request), self._route("place_gtt", work))
            case ev.RecordGttPlaced(row_id, gtt_id, triggers, at):
                journal.gtt_placed(row_id, gtt_id, at)
                desk.by_gtt_id[gtt_id] = (work.symbol, position)
                target = triggers[1] if len(triggers) > 1 else None
                ls.update_leg(position, gtt_stop=triggers[0], gtt_target=target, gtt_changed_at=at)
            case ev.RecordGttPlaceFailed(row_id, message):
                journal.gtt_place_failed(row_id, message, desk.now())
            case ev.ModifyGttCall(row_id, gtt_id, modify):
                journal.gtt_modify_intent(row_id, modify.triggers, modify.limit_prices, desk.now())
                request = modify.gtt_request()
                desk.send(
                    lambda i: gw.ModifyGtt(i, gtt_id, request), self._route("modify_gtt", work)
                )
            case ev.RecordGttModified(row_id, modify, at):
                journal.gtt_modified(row_id, at)
                ls.set_leg(gtt_placed(ls.leg(position), modify, at))
                desk.dirty[(work.symbol, position)] = None
            case ev.RecordGttModifyFailed(row_id, message):
                journal.gtt_modify_failed(row_id, message, desk.now())
            case ev.RecordGttVanished(row_id, message):
                journal.gtt_vanished(row_id, message, desk.now())
                self._forget_gtt(ls, position)
            case ev.RecordExitIntent(reason):
                journal.exit_intent(work.trade_id, reason, desk.now())
                ls.update_leg(position, exit_reason=reason)
            case ev.DeleteGttCall(gtt_id, urgent):
                desk.send(
                    lambda i: gw.DeleteGtt(i, gtt_id),
                    self._route("delete_gtt", work),
                    urgent=urgent,
                )
            case ev.RecordGttDeleted(row_id, at):
                journal.gtt_deleted(row_id, at)
                self._forget_gtt(ls, position)
            case ev.FetchGttCall(gtt_id):
                desk.send(lambda i: gw.FetchGtt(i, gtt_id), self._route("fetch_gtt", work))
            case ev.ListGttsCall():
                self.list_gtts()
            case ev.RecordGttTriggered(row_id, index, at):
                journal.gtt_triggered(row_id, index, at)
                reason = ExitReason.TARGET if index == 1 else ExitReason.STOP_GTT
                ls.update_leg(position, exit_reason=reason)
            case ev.RecordGttOrderFailed(row_id, message, at):
                journal.gtt_order_failed(row_id, message, at)
                self._forget_gtt(ls, position)
            case ev.SellCall(market, urgent):
                work = self._sell(ls, work, market=market, urgent=urgent, follow=follow)
            case ev.RecordExitOrderNotFilled(tag, state, message):
                journal.sell_ended(tag, state, message, desk.now())
                desk.by_tag.pop(tag, None)
            case ev.RecordExitFill():
                self._sold(ls, work, intent)
            case ev.FindOrderCall(tag):
                self.find_order(tag, 1, work)
            case ev.CancelBuyCall(order_id):
                desk.send(
                    lambda i: gw.CancelOrder(i, order_id),
                    self._route("cancel_buy", work),
                    urgent=True,
                )
            case ev.ToMarketCall(order_id, urgent):
                desk.send(
                    lambda i: gw.ModifyOrder(i, order_id, order_type=OrderType.MARKET),
                    self._route("to_market", work),
                    urgent=urgent,
                )
            case ev.RecordOrderModified(tag):
                journal.order_modified(tag, "MARKET", desk.now())
            case _:
                raise AssertionError(f"no effect for {intent!r}")
        return work

    @staticmethod
    def _route(kind: str, work: LegWork) -> Route:
        return Route(kind, work.symbol, work.position)

    def _forget_gtt(self, ls: LadderSlot, position: int) -> None:
        for gtt_id, key in list(self.desk.by_gtt_id.items()):
            if key == (ls.symbol, position):
                del self.desk.by_gtt_id[gtt_id]

    def find_order(self, tag: str, attempt: int, work: LegWork) -> None:
        route = Route("find_order", work.symbol, work.position, tag=tag, attempt=attempt)
        self.desk.send(lambda i: gw.FindOrderByTag(i, tag), route)

    def list_gtts(self) -> None:
        """List the broker's GTTs (one listing at a time); the trader settles legs by it."""
        if self.desk.listing_in_flight:
            return
        self.desk.listing_in_flight = True
        self.desk.send(lambda i: gw.ReconcileGtts(i), Route("list_gtts"))

    # --- our own sell --------------------------------------------------------------------

    def _sell(
        self, ls: LadderSlot, work: LegWork, *, market: bool, urgent: bool, follow: list[ev.Event]
    ) -> LegWork:
        """Write the sell (PENDING, with a tag), then place it: MARKET when asked or when
        no price is known, else a LIMIT just under the last price."""
        desk = self.desk
        now = desk.now()
        if not desk.trading:
            follow.append(ev.SellNotSent("trading is stopped", now, market=market))
            return work
        if desk.state is TradingState.EMERGENCY:
            market = urgent = True
        leg = ls.leg(work.position)
        ltp = desk.ltp.get(ls.symbol)
        order_type = OrderType.MARKET if market or ltp is None else OrderType.LIMIT
        price = None
        if order_type is OrderType.LIMIT:
            assert ltp is not None
            price = round_down_to_tick(ltp * (1 - desk.params.gtt.limit_buffer_pct / 100))
        tag = new_tag("X")
        purpose = "emergency" if urgent else "exit"
        try:
            desk.journal.sell_intent(
                work.trade_id,
                tag,
                order_type=order_type.value,
                price=price,
                purpose=purpose,
                at=now,
            )
        except IllegalTransition as exc:
            follow.append(ev.SellNotSent(str(exc), now, refused=True))
            return work
        desk.by_tag[tag] = (ls.symbol, work.position)
        request = OrderRequest(ls.symbol, Side.SELL, leg.qty, order_type, tag, price)
        desk.note_order(
            ls.symbol, tag, Side.SELL, order_type.value, leg.qty, price, "pending", purpose
        )
        route = Route("sell", ls.symbol, work.position, tag=tag)
        desk.send(lambda i: gw.PlaceOrder(i, request), route, urgent=urgent)
        follow.append(ev.SellSent(tag, order_type is OrderType.MARKET, now))
        return work

    def _sold(self, ls: LadderSlot, work: LegWork, fill: ev.RecordExitFill) -> None:
        """Record the sale with P&L and charges (the DP charge once a symbol a day)."""
        desk = self.desk
        leg = ls.leg(work.position)
        price, qty = fill.price, fill.qty
        rates = desk.params.charges
        charges = order_charges(Side.BUY, qty, leg.entry_price, rates) + order_charges(
            Side.SELL, qty, price, rates, dp_applies=ls.symbol not in desk.dp_billed
        )
        desk.dp_billed.add(ls.symbol)
        pnl = sold_leg_pnl(leg.entry_price, price, qty, charges.total)
        desk.journal.exit_filled(
            work.trade_id, price, qty, fill.at, pnl, tag=fill.tag, order_id=fill.order_id
        )
        desk.realised_gross += pnl.gross
        desk.charges_today += pnl.charges
        desk.realised_net += pnl.net
        ls.update_leg(work.position, state=LegState.CLOSED, exit_price=price, exit_time=fill.at)
        if leg.exit_reason in STOP_REASONS:
            ls.ladder.stopped_out = True
        purpose = "gtt" if fill.tag is None else "exit"
        if fill.tag is not None and leg.exit_reason is ExitReason.EMERGENCY:
            purpose = "emergency"
        order_type = "MARKET" if fill.market else "LIMIT"
        desk.note_order(
            ls.symbol, fill.tag, Side.SELL, order_type, qty, price, "filled", purpose, at=fill.at
        )
