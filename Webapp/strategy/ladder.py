"""The ladder rules (STRATEGY.md): pure functions from a ladder and a price to decisions.

Nothing here calls the broker, reads the clock or writes the database: the engine
passes the time and the account summary in, and carries out the actions that come
back. That is what lets live, paper and backtest decide alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from Webapp.broker.base import round_down_to_tick, round_up_to_tick
from Webapp.config.params import KITE_MIN_TRIGGER_DISTANCE_PCT, Params
from Webapp.states import ExitReason, LadderState, LegState
from Webapp.strategy.actions import Action, Buy, Exit, ModifyGtt, PlaceGtt, RaiseStop, Skip
from Webapp.strategy.limits import Book, leg_quantity, leg_refused

# Prices on a threshold count as reaching it although the float product may land a
# hair off (1000 x 1.0025 is 1002.4999999999999).
_REL_EPS = 1e-9
BOUGHT = frozenset({LegState.PROTECTING, LegState.OPEN})  # held, and the stop is ours to trail
STOP_REASONS = frozenset({ExitReason.STOP_GTT, ExitReason.STOP_ENGINE})
BookSource = Callable[[], Book]


@dataclass
class Leg:
    """One buy of the ladder (one row of the trades table).

    `stop` is the engine's unrounded trailing stop; `gtt_stop` / `gtt_target` are the
    triggers as placed at the broker (on the tick) and `gtt_changed_at` when the GTT
    was last placed or modified. A leg still PENDING_ENTRY holds its decision price
    as `entry_price` until the fill replaces it.
    """

    position_number: int
    qty: int
    entry_price: float
    entry_time: datetime
    high: float
    stop: float
    target: float | None
    sl_pct: float
    state: LegState = LegState.PENDING_ENTRY
    gtt_stop: float | None = None
    gtt_target: float | None = None
    gtt_changed_at: datetime | None = None
    exit_price: float | None = None
    exit_time: datetime | None = None
    exit_reason: ExitReason | None = None

    @property
    def bought(self) -> bool:
        return self.state in BOUGHT

    @property
    def cost(self) -> float:
        return self.qty * self.entry_price


@dataclass
class Ladder:
    """The position in one symbol: legs P1..P3, added in order, each at most once."""

    symbol: str
    legs: list[Leg] = field(default_factory=list)
    state: LadderState = LadderState.OPEN
    stopped_out: bool = False
    opened_at: datetime | None = None
    closed_at: datetime | None = None

    def leg(self, position_number: int) -> Leg | None:
        return next((g for g in self.legs if g.position_number == position_number), None)

    @property
    def is_stopped_out(self) -> bool:
        """A leg was stopped out (by the engine or its GTT): the ladder adds no more legs."""
        return (
            self.stopped_out
            or self.state is LadderState.STOPPED_OUT
            or any(g.exit_reason in STOP_REASONS for g in self.legs)
        )


# --- prices ---------------------------------------------------------------------------


def reaches(ltp: float, threshold: float) -> bool:
    """LTP ≥ threshold, a price exactly on the threshold counting despite float error."""
    return ltp >= threshold * (1 - _REL_EPS)


def stop_below(high: float, sl_pct: float) -> float:
    """The trailing stop for a high: high × (1 − sl_pct/100), unrounded."""
    return high * (1 - sl_pct / 100)


def sell_limit(trigger: float, params: Params) -> float:
    """The LIMIT sell a GTT places: trigger × (1 − limit_buffer_pct/100), rounded down."""
    return round_down_to_tick(trigger * (1 - params.gtt.limit_buffer_pct / 100))


def too_close_to_ltp(trigger: float, ltp: float) -> bool:
    """Kite refuses a GTT trigger within 0.25% of the last price (that distance included)."""
    return abs(trigger - ltp) / ltp * 100 <= KITE_MIN_TRIGGER_DISTANCE_PCT


def gtt_reached(leg: Leg, ltp: float) -> bool:
    """The price reached a trigger of the leg's GTT at the broker (it fires there)."""
    if leg.gtt_target is not None and ltp >= leg.gtt_target:
        return True
    return leg.gtt_stop is not None and ltp <= leg.gtt_stop


def sl_pct_for(position_number: int, params: Params) -> float:
    return {1: params.p1.sl_pct, 2: params.p2.sl_pct, 3: params.p3.sl_pct}[position_number]


# --- a leg's life ---------------------------------------------------------------------


def on_fill(
    symbol: str,
    position_number: int,
    qty: int,
    fill_price: float,
    now: datetime,
    params: Params,
    last_price: float | None = None,
) -> tuple[Leg, PlaceGtt]:
    """The leg as bought at `fill_price` (high = fill, stop and target from it) and its GTT.

    The leg is PROTECTING until the engine confirms the GTT (see `gtt_placed`).
    `last_price` is the LTP sent with the GTT; the fill price when not given.
    """
    sl_pct = sl_pct_for(position_number, params)
    stop = stop_below(fill_price, sl_pct)
    target = fill_price * (1 + params.p1.target_pct / 100) if position_number == 1 else None
    leg = Leg(
        position_number=position_number,
        qty=qty,
        entry_price=fill_price,
        entry_time=now,
        high=fill_price,
        stop=stop,
        target=target,
        sl_pct=sl_pct,
        state=LegState.PROTECTING,
    )
    return leg, protection(symbol, leg, fill_price if last_price is None else last_price, params)


def protection(symbol: str, leg: Leg, last_price: float, params: Params) -> PlaceGtt:
    """The GTT for a bought leg as it stands: its stop (and P1's target) on the tick."""
    stop_trigger = round_down_to_tick(leg.stop)
    target_trigger = None if leg.target is None else round_up_to_tick(leg.target)
    triggers = (stop_trigger,) if target_trigger is None else (stop_trigger, target_trigger)
    return PlaceGtt(
        symbol=symbol,
        leg=leg.position_number,
        qty=leg.qty,
        stop=stop_trigger,
        target=target_trigger,
        limit_prices=tuple(sell_limit(t, params) for t in triggers),
        last_price=last_price,
    )


def placeable(gtt: PlaceGtt | ModifyGtt, ltp: float) -> bool:
    """Kite would take these triggers at `ltp`: none within 0.25% of it, and for an OCO
    the price strictly between stop and target."""
    if any(too_close_to_ltp(t, ltp) for t in gtt.triggers):
        return False
    return gtt.target is None or gtt.stop < ltp < gtt.target


def gtt_placed(leg: Leg, gtt: PlaceGtt | ModifyGtt, at: datetime) -> Leg:
    """The leg once the broker confirmed its GTT (placed or modified) at `at`: OPEN."""
    return replace(
        leg, state=LegState.OPEN, gtt_stop=gtt.stop, gtt_target=gtt.target, gtt_changed_at=at
    )


def stop_raised(leg: Leg, raise_stop: RaiseStop) -> Leg:
    """The leg with the new high and stop of a RaiseStop decision applied."""
    return replace(leg, high=raise_stop.high, stop=max(leg.stop, raise_stop.stop))


# --- one price ------------------------------------------------------------------------


def on_price(
    ladder: Ladder, ltp: float, now: datetime, params: Params, book: Book | BookSource
) -> list[Action]:
    """Decisions for one ladder at one price, STRATEGY.md "Order of work" steps 2-5.

    2. raise each bought leg's high and stop (RaiseStop; the stop never moves down);
    3. exit each bought leg whose LTP ≤ stop (Exit; the engine cancels the GTT first);
    4. add at most one leg: P2, else P3 (Buy, or Skip when a limit refuses it), never on a
       price that exits a leg or reaches a trigger of a leg's GTT (it fires at the broker);
    5. modify the GTTs that are due (ModifyGtt).
    `book` is the account as it stands before this price (this ladder's legs included), or
    a function giving it: it is only needed when a leg may be added, which few prices do.
    """
    if ladder.state is LadderState.CLOSED or ltp <= 0:
        return []
    symbol = ladder.symbol
    actions: list[Action] = []

    stops: dict[int, float] = {}
    exiting: list[int] = []
    # Live: the exchange fires a GTT before its order update reaches us, so a leg whose
    # trigger this price reached is already being sold: no leg is added on that price.
    firing = False
    for leg in ladder.legs:
        if not leg.bought:
            continue
        n, stop = leg.position_number, leg.stop
        if ltp > leg.high:
            stop = max(stop, stop_below(ltp, leg.sl_pct))
            actions.append(RaiseStop(symbol, n, ltp, stop))
        if ltp <= stop * (1 + _REL_EPS):
            exiting.append(n)
        elif gtt_reached(leg, ltp):
            firing = True
        else:
            stops[n] = stop  # may still have its GTT moved (step 5)
    actions.extend(Exit(symbol, n, ltp) for n in exiting)

    if not exiting and not firing and not ladder.is_stopped_out:
        actions.extend(_add(ladder, ltp, params, book))

    for leg in ladder.legs:
        stop = stops.get(leg.position_number)
        if stop is not None:
            modify = _modify_due(symbol, leg, stop, ltp, now, params)
            if modify is not None:
                actions.append(modify)
    return actions


def _add(ladder: Ladder, ltp: float, params: Params, book: Book | BookSource) -> list[Action]:
    """Step 4: P2 if P1 is bought and LTP reached its trigger, else P3 likewise; one at most."""
    by_position = {g.position_number: g for g in ladder.legs}
    p1, p2, p3 = by_position.get(1), by_position.get(2), by_position.get(3)
    if p1 is None or not p1.bought:
        return []
    if p2 is None:
        if reaches(ltp, p1.entry_price * (1 + params.p2.trigger_pct / 100)):
            return [_buy_or_skip(ladder.symbol, 2, ltp, params, book)]
        return []
    if p3 is None and p2.bought:
        average = (p1.cost + p2.cost) / (p1.qty + p2.qty)
        if reaches(ltp, average * (1 + params.p3.trigger_pct / 100)):
            return [_buy_or_skip(ladder.symbol, 3, ltp, params, book)]
    return []


def _buy_or_skip(
    symbol: str, leg: int, ltp: float, params: Params, book: Book | BookSource
) -> Buy | Skip:
    if callable(book):
        book = book()
    qty = leg_quantity(ltp, params)
    refused = leg_refused(book, params, qty, ltp)
    if refused is not None:
        reason, detail = refused
        return Skip(symbol, reason, leg=leg, detail=detail)
    return Buy(symbol, leg, qty, ltp)


def _modify_due(
    symbol: str, leg: Leg, stop: float, ltp: float, now: datetime, params: Params
) -> ModifyGtt | None:
    """Step 5: a GTT moves up when the stop is min_step_pct above its trigger, at most once
    per min_interval_s, and only when Kite would take the new triggers at this LTP."""
    if leg.state is not LegState.OPEN or leg.gtt_stop is None or leg.gtt_changed_at is None:
        return None
    if not reaches(stop, leg.gtt_stop * (1 + params.gtt.min_step_pct / 100)):
        return None
    new_stop = round_down_to_tick(stop)
    if new_stop <= leg.gtt_stop:
        return None
    if (now - leg.gtt_changed_at).total_seconds() < params.gtt.min_interval_s:
        return None
    triggers = (new_stop,) if leg.gtt_target is None else (new_stop, leg.gtt_target)
    modify = ModifyGtt(
        symbol=symbol,
        leg=leg.position_number,
        qty=leg.qty,
        stop=new_stop,
        target=leg.gtt_target,
        limit_prices=tuple(sell_limit(t, params) for t in triggers),
        last_price=ltp,
    )
    return modify if placeable(modify, ltp) else None
