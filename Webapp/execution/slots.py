"""The engine's handles on ladders and legs: the pure Ladder plus DB ids and the work in flight.

The rules (ladder.py) see only `Ladder` and `Leg`; the engine also needs to know which
trades row a leg is, which GTT protects it at the broker, and which broker call is in
flight for it, so that it never starts a second one. These slots hold exactly that and
are rebuilt from the app DB on every start (`ladder_slot_from_row`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from Webapp.states import ExitReason, GttIntentState, LadderState, LegState
from Webapp.storage.trading_models import Ladder as LadderRow
from Webapp.storage.trading_models import Trade, TradeGtt
from Webapp.storage.trading_store import LIVE_GTT_STATES
from Webapp.strategy.actions import ModifyGtt, PlaceGtt
from Webapp.strategy.ladder import Ladder, Leg

HELD = frozenset({LegState.PROTECTING, LegState.OPEN, LegState.PENDING_EXIT})
LIVE = frozenset({LegState.PENDING_ENTRY, *HELD})


class GttWork:
    """What the leg's GTT is doing at the broker right now (at most one call at a time)."""

    PLACING = "placing"
    MODIFYING = "modifying"
    DELETING = "deleting"


@dataclass
class LegSlot:
    symbol: str
    position: int
    trade_id: int
    entry_tag: str | None = None
    entry_order_id: str | None = None
    gtt_row_id: int | None = None  # the live GTT's row (trades' gtts table)
    gtt_id: int | None = None  # the broker's id of that GTT
    gtt_work: str | None = None  # a GttWork while a call is in flight
    pending_modify: ModifyGtt | None = None  # the modify in flight (its new triggers)
    pending_place: PlaceGtt | None = None  # the placement in flight
    gtt_unknown: bool = False  # a call's outcome is unknown: the next GTT listing settles it
    gtt_retry_at: datetime | None = None  # a refused placement is tried again from then
    exit_wanted: ExitReason | None = None  # decided while a GTT placement was in flight
    exit_tag: str | None = None  # our sell order in flight
    exit_order_id: str | None = None
    exit_order_type: str | None = None  # LIMIT | MARKET
    exit_sent_at: datetime | None = None
    sell_retry_at: datetime | None = None
    gtt_triggered: bool = False  # the GTT fired: its own order sells the leg
    gtt_order_id: str | None = None  # that order, once known
    gtt_order_open_since: datetime | None = None
    to_market_sent: bool = False  # the exit timeout's modify to MARKET is in flight or done
    dirty: bool = False  # stop/high raised in memory, not yet written


@dataclass
class LadderSlot:
    ladder_id: int
    ladder: Ladder
    legs: dict[int, LegSlot] = field(default_factory=dict)

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

    def set_state(self, position: int, state: LegState, **changes) -> Leg:
        leg = replace(self.leg(position), state=state, **changes)
        self.set_leg(leg)
        return leg

    def live_positions(self) -> list[int]:
        return [g.position_number for g in self.ladder.legs if g.state in LIVE]

    @property
    def finished(self) -> bool:
        return bool(self.ladder.legs) and not self.live_positions()


def live_gtt(trade: Trade) -> TradeGtt | None:
    """The trade's GTT row that may exist at the broker, or a TRIGGERED one, if any."""
    live = [g for g in trade.gtts if g.state in LIVE_GTT_STATES]
    if live:
        return live[-1]
    fired = [g for g in trade.gtts if g.state == GttIntentState.TRIGGERED.value]
    return fired[-1] if fired else None


def leg_from_row(trade: Trade) -> Leg:
    """The pure leg of a trades row (a pending entry has no price yet: 0 until it fills)."""
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
        state=LegState(trade.status),
        gtt_stop=triggers[0] if triggers else None,
        gtt_target=triggers[1] if len(triggers) > 1 else None,
        gtt_changed_at=gtt.last_change_at if active and gtt is not None else None,
        exit_price=trade.exit_price,
        exit_time=trade.exit_time,
        exit_reason=ExitReason(trade.exit_reason) if trade.exit_reason else None,
    )


def leg_slot_from_row(trade: Trade) -> LegSlot:
    gtt = live_gtt(trade)
    slot = LegSlot(
        symbol=trade.symbol,
        position=trade.position_number,
        trade_id=trade.trade_id,
        entry_tag=trade.entry_tag,
        exit_tag=trade.exit_tag,
    )
    for order in trade.orders:
        if order.side == "BUY":
            slot.entry_order_id = order.broker_order_id
        elif order.tag == trade.exit_tag:
            slot.exit_order_id = order.broker_order_id
            slot.exit_order_type = order.order_type
            slot.exit_sent_at = order.updated_at
    if gtt is not None:
        slot.gtt_row_id = gtt.id
        slot.gtt_id = gtt.broker_gtt_id
        slot.gtt_triggered = gtt.state == GttIntentState.TRIGGERED.value
    return slot


def ladder_slot_from_row(row: LadderRow) -> LadderSlot:
    legs = [t for t in row.legs if t.status != LegState.CANCELLED.value]
    ladder = Ladder(
        symbol=row.symbol,
        legs=[leg_from_row(t) for t in legs],
        state=LadderState(row.state),
        stopped_out=row.stopped_out,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
    )
    slot = LadderSlot(ladder_id=row.id, ladder=ladder)
    for trade in legs:
        slot.legs[trade.position_number] = leg_slot_from_row(trade)
    return slot
