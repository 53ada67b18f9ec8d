"""Broker answers: a call's result, an order update or a GTT listing, as the event of its leg.

Every broker call leaves with a Route (desk.py) saying what it was for; its answer comes
back here and becomes the leg's event (a placed GTT, a refused sell, a lost reply, …)
for the lifecycle to decide on. Order news (a placement's reply, an update, a lookup)
is matched to its leg by tag or order id; news of an order that is not ours yet (a fired
GTT's) is kept until a GTT listing says whose it is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from Webapp.broker.base import Gtt, Order, OrderState, Side
from Webapp.execution import gateway as gw
from Webapp.execution import leg_events as ev
from Webapp.execution.desk import Desk, LegKey, Route
from Webapp.execution.leg_effects import LegEffects
from Webapp.execution.leg_lifecycle import LISTING_SETTLES, LegWork, Stage
from Webapp.execution.reconciliation import matching_gtt
from Webapp.execution.trading_view import TradingState
from Webapp.states import ExitReason, OrderIntentState
from Webapp.strategy.ladder import on_fill, placeable

log = logging.getLogger(__name__)

OUR_TAG = re.compile(r"^[EX][0-9a-f]{16}$")  # new_tag("E") buys, new_tag("X") sells


class BrokerAnswers:
    """Turns broker answers into leg events for one desk (on the engine thread)."""

    def __init__(
        self,
        desk: Desk,
        handle: Callable[[LegKey, ev.Event], None],
        effects: LegEffects,
        reconcile_answer: Callable[[Route, gw.Result], None],
    ) -> None:
        self.desk = desk
        self.handle = handle
        self.effects = effects
        self.reconcile_answer = reconcile_answer

    def result(self, result: gw.Result) -> None:
        """A broker call came back: its answer becomes an event of the leg it was for."""
        route = self.desk.waiting.pop(result.request.intent_id, None)
        if route is None:
            log.warning("result for an unknown intent %s ignored", result.request.intent_id)
            return
        self.desk.changed = True
        at = result.at or self.desk.now()
        if route.kind == "reconcile":
            self.reconcile_answer(route, result)
        elif route.kind == "list_gtts":
            self.desk.listing_in_flight = False
            if isinstance(result, gw.Done):
                self._listed(result.value, at)
            else:
                self.desk.error(f"GTT listing failed: {result.error.message}")
        elif route.kind == "find_order":
            self._found(route, result, at)
        elif route.kind in ("buy", "sell") and isinstance(result, gw.Done):
            self.order_seen(result.value, at)
        else:
            event = self._answer_event(route, result, at)
            if event is not None:
                self.handle(route.key, event)

    def _answer_event(self, route: Route, result: gw.Result, at: datetime) -> ev.Event | None:
        """The leg's event for a broker call's answer (buy and sell successes aside)."""
        kind, done = route.kind, isinstance(result, gw.Done)
        if done:
            value = result.value
            return {
                "place_gtt": lambda: ev.GttPlaced(int(value), at),
                "modify_gtt": lambda: ev.GttModified(at),
                "delete_gtt": lambda: ev.GttDeleteAnswered(value, at),
                "fetch_gtt": lambda: ev.GttSeen(value, at),
                "to_market": lambda: ev.ToMarketAnswered(True),
                "cancel_buy": lambda: None,
            }[kind]()
        assert isinstance(result, gw.Failed)
        message, ambiguous = result.error.message, result.ambiguous
        if kind == "buy":
            if ambiguous:
                return ev.BuyReplyLost(message)
            self.desk.error(f"{route.symbol} P{route.position} buy refused: {message}")
            return ev.BuyEnded(OrderIntentState.REJECTED, message)
        if kind == "sell":
            return ev.SellReplyLost(message) if ambiguous else ev.SellRefused(message, at)
        if kind == "place_gtt":
            return ev.GttReplyLost(message) if ambiguous else ev.GttRefused(message, at)
        if kind in ("modify_gtt", "delete_gtt"):
            return ev.GttCallFailed(message)
        if kind == "fetch_gtt":
            self.desk.retry_listing_at = self.desk.now() + timedelta(seconds=5)
            return ev.GttLookupFailed(message)
        if kind == "to_market":
            return ev.ToMarketAnswered(False, message)
        self.desk.error(f"{route.symbol} P{route.position}: cancel of the buy failed: {message}")
        return None

    def _found(self, route: Route, result: gw.Result, at: datetime) -> None:
        """After a lost reply: the order carrying the tag, or (after 3 looks) it never arrived."""
        tag = route.tag
        if isinstance(result, gw.Failed):
            self.desk.error(
                f"order {tag} lookup failed: {result.error.message}; reconcile on restart"
            )
            return
        if result.value is not None:
            self.order_seen(result.value, at)
            return
        work = self.desk.work(route.key)
        if work is None or tag is None:
            return
        if route.attempt < 3:
            self.effects.find_order(tag, route.attempt + 1, work)
        elif tag == work.entry_tag:
            lost = "not found at the broker after a lost reply"
            self.handle(route.key, ev.BuyEnded(OrderIntentState.CANCELLED, lost))
        elif tag == work.exit_tag:
            self.handle(route.key, ev.SellNotFound(at))

    def order_seen(self, order: Order, at: datetime) -> None:
        """Any news of an order (a placement's reply, an update, a lookup): the leg's event."""
        key = self.desk.by_tag.get(order.tag or "") or self.desk.by_order_id.get(order.order_id)
        work = None if key is None else self.desk.work(key)
        if key is None or work is None:
            if order.tag and OUR_TAG.match(order.tag):
                return  # one of ours already settled (a reply arriving after its fill)
            self.desk.remember_order(order)
            if order.side is Side.SELL and order.symbol in self.desk.ladders:
                self.effects.list_gtts()  # perhaps one of our GTTs fired: find out which
            return
        if order.tag and order.tag == work.entry_tag:
            self._entry_news(key, work, order, at)
        elif order.tag and order.tag == work.exit_tag:
            self.handle(key, ev.SellOrderSeen(order, at))
        elif order.order_id == work.exit_order_id:
            self.handle(key, ev.GttOrderSeen(order, at))

    def _entry_news(self, key: LegKey, work: LegWork, order: Order, at: datetime) -> None:
        if work.stage is not Stage.ENTERING:
            return  # already settled (a late duplicate update)
        self.handle(key, ev.BuyAcked(order.order_id, at))
        if order.state is OrderState.FILLED or (order.state.is_final and order.filled_quantity > 0):
            self._bought(key, order.filled_quantity, order.average_price, at, order.order_id)
        elif order.state in (OrderState.CANCELLED, OrderState.REJECTED):
            message = order.status_message or order.state.value
            self.handle(key, ev.BuyEnded(OrderIntentState(order.state.value), message))

    def _bought(self, key: LegKey, qty: int, price: float, at: datetime, order_id: str) -> None:
        """The buy filled: protect the leg at once (or sell it in an emergency)."""
        symbol, position = key
        ltp = self.desk.ltp.get(symbol, price)
        leg, gtt = on_fill(symbol, position, qty, price, at, self.desk.params, last_price=ltp)
        emergency = self.desk.state is TradingState.EMERGENCY
        protect = gtt if not emergency and placeable(gtt, ltp) else None
        self.handle(key, ev.BuyFilled(qty, price, at, order_id, protect))
        if emergency:
            self.handle(key, ev.ExitDecided(ExitReason.EMERGENCY))
        elif protect is None and leg.target is not None and ltp >= leg.target:
            self.handle(key, ev.ExitDecided(ExitReason.TARGET))

    def _listed(self, gtts: list[Gtt], at: datetime) -> None:
        """The broker's GTTs: settle every leg a listing may settle (no call of ours in flight)."""
        by_id = {g.gtt_id: g for g in gtts}
        for ls in list(self.desk.ladders.values()):
            for position in sorted(ls.work):
                key = (ls.symbol, position)
                work = self.desk.work(key)
                if work is None or work.stage not in LISTING_SETTLES:
                    continue
                if work.stage in (Stage.PLACE_CHECK, Stage.PLACE_CHECK_EXIT):
                    assert work.terms is not None
                    found = matching_gtt(
                        gtts,
                        ls.symbol,
                        work.terms.qty,
                        work.terms.triggers,
                        set(self.desk.by_gtt_id),
                    )
                    self.handle(key, ev.GttSeen(found, at))
                elif work.gtt_id is not None:
                    self.handle(key, ev.GttSeen(by_id.get(work.gtt_id), at))
