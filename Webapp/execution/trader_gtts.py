"""GTTs through the trader: place one for every bought leg, trail it with modify_gtt, watch it.

STRATEGY.md "Protection at the broker": the GTT is placed at once after a fill (OCO for
P1, single for runners), moved up only with modify_gtt, and never doubled: a placement
whose reply was lost is looked for among the broker's GTTs before another is sent. When
Kite would refuse the triggers at the current price, the engine's own stop guards the
leg and placement is tried again on later prices. A mixin of Trader (trader.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from Webapp.broker.base import BrokerError, Gtt, GttState
from Webapp.execution import gateway as gw
from Webapp.execution.slots import GttWork, LadderSlot
from Webapp.execution.trading_view import TradingState
from Webapp.states import ExitReason, LegState
from Webapp.storage import trading_gtts
from Webapp.strategy.actions import ModifyGtt, PlaceGtt
from Webapp.strategy.ladder import gtt_placed, placeable

if TYPE_CHECKING:
    from Webapp.execution.trader import Trader

# A refused GTT placement is tried again after this long (never in a tight loop).
RETRY_AFTER = timedelta(seconds=5)


class GttFlow:
    """GTT placement, trailing and listing for Trader; every method runs on the engine thread."""

    def place_gtt(self: Trader, ls: LadderSlot, position: int, gtt: PlaceGtt) -> None:
        """Protect a bought leg; when Kite would refuse the triggers at this price, the
        engine's own stop guards the leg and placement is tried again on later prices."""
        slot = ls.legs[position]
        leg = ls.leg(position)
        if slot.gtt_work is not None:
            return
        ltp = gtt.last_price
        if not placeable(gtt, ltp):
            if leg.target is not None and ltp >= leg.target:
                self.exit_leg(ls, position, ExitReason.TARGET, ltp)
            else:
                slot.gtt_retry_at = self.now()  # next price; the engine stop guards meanwhile
            return
        row = self.write(
            trading_gtts.gtt_intent,
            slot.trade_id,
            gtt.gtt_request().gtt_type.value,
            gtt.triggers,
            gtt.limit_prices,
            now=self.now(),
        )
        slot.gtt_row_id = row.id
        slot.gtt_work, slot.pending_place = GttWork.PLACING, gtt
        request = gtt.gtt_request()
        self.send(
            lambda i: gw.PlaceGtt(i, request),
            lambda gtt_id, at: self.gtt_confirmed(ls, position, gtt.triggers, int(gtt_id), at),
            lambda err, ambiguous: self._gtt_place_failed(ls, position, gtt, err, ambiguous),
        )

    def gtt_confirmed(
        self: Trader,
        ls: LadderSlot,
        position: int,
        triggers: tuple[float, ...],
        gtt_id: int,
        at: datetime,
    ) -> None:
        """The broker holds the leg's GTT with `triggers`: the leg is OPEN (protected)."""
        slot = ls.legs[position]
        assert slot.gtt_row_id is not None
        self.write(trading_gtts.gtt_placed, slot.gtt_row_id, gtt_id, now=at)
        slot.gtt_id, slot.gtt_work, slot.gtt_retry_at = gtt_id, None, None
        slot.pending_place, slot.gtt_unknown = None, False
        self._by_gtt_id[gtt_id] = slot
        leg = ls.leg(position)
        if leg.state in (LegState.PROTECTING, LegState.OPEN):
            target = triggers[1] if len(triggers) > 1 else None
            ls.set_state(
                position, LegState.OPEN, gtt_stop=triggers[0], gtt_target=target, gtt_changed_at=at
            )
        if slot.exit_wanted is not None:
            reason, slot.exit_wanted = slot.exit_wanted, None
            self.exit_leg(ls, position, reason, self.ltp.get(ls.symbol, leg.entry_price))

    def _gtt_place_failed(
        self: Trader,
        ls: LadderSlot,
        position: int,
        gtt: PlaceGtt,
        error: BrokerError,
        ambiguous: bool,
    ) -> None:
        if ambiguous:
            self.error(
                f"{ls.symbol} P{position}: GTT placement reply lost ({error.message}); listing GTTs"
            )
            self.send(
                lambda i: gw.ReconcileGtts(i),
                lambda gtts, at: self._adopt_or_retry(ls, position, gtt, gtts, at),
                lambda err, _a: self._gtt_placement_unknown(ls, position, err),
            )
            return
        self.error(
            f"{ls.symbol} P{position}: GTT refused: {error.message}; "
            "the engine's stop guards the leg, retrying"
        )
        self._gtt_not_placed(ls, position, error.message)

    def _gtt_not_placed(self: Trader, ls: LadderSlot, position: int, message: str) -> None:
        slot = ls.legs[position]
        assert slot.gtt_row_id is not None
        self.write(
            trading_gtts.gtt_place_failed, slot.gtt_row_id, now=self.now(), message=message[:255]
        )
        slot.gtt_row_id, slot.gtt_work = None, None
        slot.pending_place, slot.gtt_unknown = None, False
        slot.gtt_retry_at = self.now() + RETRY_AFTER
        if slot.exit_wanted is not None:
            reason, slot.exit_wanted = slot.exit_wanted, None
            self.exit_leg(ls, position, reason, self.ltp.get(ls.symbol, 0.0))

    def _gtt_placement_unknown(
        self: Trader, ls: LadderSlot, position: int, error: BrokerError
    ) -> None:
        # Neither placed nor refused for sure: keep PENDING (never a second GTT), and let
        # the next GTT listing settle it.
        self.error(
            f"{ls.symbol} P{position}: GTT placement unknown ({error.message}); "
            "will list GTTs again"
        )
        slot = ls.legs[position]
        slot.gtt_work, slot.gtt_unknown = GttWork.PLACING, True
        self.retry_sync_at = self.now() + RETRY_AFTER

    def _adopt_or_retry(
        self: Trader, ls: LadderSlot, position: int, gtt: PlaceGtt, gtts: list[Gtt], at: datetime
    ) -> None:
        match = self.matching_gtt(gtts, gtt.symbol, gtt.qty, gtt.triggers)
        if match is not None:
            self.gtt_confirmed(ls, position, gtt.triggers, match.gtt_id, at)
        else:
            self._gtt_not_placed(ls, position, "not found at the broker after a lost reply")

    def matching_gtt(
        self: Trader,
        gtts: list[Gtt],
        symbol: str,
        qty: int,
        triggers: tuple[float, ...],
        states: frozenset[GttState] = frozenset({GttState.ACTIVE}),
    ) -> Gtt | None:
        """A broker GTT in `states` (active) with these terms that no leg claims yet."""
        claimed = set(self._by_gtt_id)
        for g in gtts:
            if (
                g.state in states
                and g.symbol == symbol
                and g.quantity == qty
                and g.gtt_id not in claimed
                and tuple(round(t, 2) for t in g.triggers) == tuple(round(t, 2) for t in triggers)
            ):
                return g
        return None

    def modify_gtt(self: Trader, ls: LadderSlot, modify: ModifyGtt) -> None:
        """Trail the GTT with modify_gtt (never cancel-then-create): intent, then the call."""
        slot = ls.legs[modify.leg]
        if slot.gtt_work is not None or slot.gtt_id is None or slot.gtt_row_id is None:
            return
        if self.state is not TradingState.RUNNING and self.state is not TradingState.PAUSED:
            return
        self.write(
            trading_gtts.gtt_modify_intent,
            slot.gtt_row_id,
            modify.triggers,
            modify.limit_prices,
            now=self.now(),
        )
        slot.gtt_work, slot.pending_modify = GttWork.MODIFYING, modify
        gtt_id, request = slot.gtt_id, modify.gtt_request()
        self.send(
            lambda i: gw.ModifyGtt(i, gtt_id, request),
            lambda _v, at: self._gtt_modified(ls, modify, at),
            lambda err, ambiguous: self._gtt_modify_failed(ls, modify, err, ambiguous),
        )

    def _gtt_modified(self: Trader, ls: LadderSlot, modify: ModifyGtt, at: datetime) -> None:
        slot = ls.legs[modify.leg]
        if slot.gtt_work != GttWork.MODIFYING:
            return  # an exit took the GTT over meanwhile
        slot.gtt_work, slot.pending_modify = None, None
        assert slot.gtt_row_id is not None
        self.write(trading_gtts.gtt_modified, slot.gtt_row_id, now=at)
        leg = ls.leg(modify.leg)
        if leg.state is LegState.OPEN:
            ls.set_leg(gtt_placed(leg, modify, at))
        slot.dirty = True

    def _gtt_modify_failed(
        self: Trader, ls: LadderSlot, modify: ModifyGtt, error: BrokerError, ambiguous: bool
    ) -> None:
        slot = ls.legs[modify.leg]
        if slot.gtt_work != GttWork.MODIFYING or slot.gtt_id is None:
            return
        self.error(
            f"{ls.symbol} P{modify.leg}: GTT modify failed: {error.message}; "
            "checking the GTT at the broker"
        )
        gtt_id = slot.gtt_id
        self.send(
            lambda i: gw.FetchGtt(i, gtt_id),
            lambda g, at: self.gtt_truth(ls, modify.leg, g, at),
            lambda err, _a: self.gtt_truth(ls, modify.leg, None, self.now(), unknown=err.message),
        )

    # --- the GTT list: triggers and vanished GTTs ------------------------------------------

    def sync_gtts(self: Trader) -> None:
        """List the broker's GTTs and settle each of ours against it (one listing at a time)."""
        if self._gtt_sync_in_flight:
            return
        self._gtt_sync_in_flight = True

        def listed(gtts: list[Gtt], at: datetime) -> None:
            self._gtt_sync_in_flight = False
            by_id = {g.gtt_id: g for g in gtts}
            for ls in list(self.ladders.values()):
                for position, slot in list(ls.legs.items()):
                    if self.ladders.get(ls.symbol) is not ls or position not in ls.legs:
                        continue  # closed by an earlier leg's settlement in this loop
                    broker_gtt = by_id.get(slot.gtt_id) if slot.gtt_id is not None else None
                    if slot.gtt_triggered:
                        if slot.gtt_order_id is None and broker_gtt is not None:
                            self._gtt_fired(ls, position, broker_gtt, at)
                    elif slot.gtt_unknown:
                        # Only calls whose outcome is unknown; one in flight settles itself.
                        slot.gtt_unknown = False
                        if slot.gtt_work == GttWork.PLACING and slot.pending_place is not None:
                            self._adopt_or_retry(ls, position, slot.pending_place, gtts, at)
                        elif slot.gtt_id is not None:
                            self.gtt_truth(ls, position, broker_gtt, at)
                    elif slot.gtt_work is None and slot.gtt_id is not None:
                        self.gtt_truth(ls, position, broker_gtt, at)

        def failed(error: BrokerError, _ambiguous: bool) -> None:
            self._gtt_sync_in_flight = False
            self.error(f"GTT listing failed: {error.message}")

        self.send(lambda i: gw.ReconcileGtts(i), listed, failed)

    def _maybe_sync_gtts(self: Trader, now: datetime) -> None:
        every = self.config.gtt_sync_every
        if every is None or not self.ladders:
            return
        if self._next_gtt_sync is None or now >= self._next_gtt_sync:
            self._next_gtt_sync = now + every
            self.sync_gtts()
