"""The ladder rules of STRATEGY.md as scenario tables: a few prices in, the exact decisions out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.strategy_scenarios import DEFAULTS, SYMBOL, T0, Replay, Scenario, params, replay
from Webapp.broker.base import GttType, round_down_to_tick
from Webapp.states import ExitReason, LadderState, LegState
from Webapp.strategy.actions import Buy, Exit, ModifyGtt, PlaceGtt, RaiseStop, Skip, SkipReason
from Webapp.strategy.ladder import Ladder, gtt_placed, on_fill, on_price
from Webapp.strategy.limits import Book


def buy(leg: int, qty: int, price: float) -> Buy:
    return Buy(SYMBOL, leg, qty, price)


def limits(*triggers: float) -> tuple[float, ...]:
    """LIMIT sells at trigger x (1 - 0.5%), rounded down (checked literally in the first rows)."""
    return tuple(round_down_to_tick(t * 0.995) for t in triggers)


def place(leg: int, qty: int, stop: float, target: float | None = None, *, last: float) -> PlaceGtt:
    triggers = (stop,) if target is None else (stop, target)
    return PlaceGtt(SYMBOL, leg, qty, stop, target, limits(*triggers), last)


def modify(
    leg: int, qty: int, stop: float, target: float | None = None, *, last: float
) -> ModifyGtt:
    triggers = (stop,) if target is None else (stop, target)
    return ModifyGtt(SYMBOL, leg, qty, stop, target, limits(*triggers), last)


def skip(reason: SkipReason, leg: int) -> Skip:
    return Skip(SYMBOL, reason, leg=leg)


def exit_at(leg: int, price: float) -> Exit:
    return Exit(SYMBOL, leg, price, ExitReason.STOP_ENGINE)


P1_AT_1000 = [buy(1, 3, 1000.0), place(1, 3, 975.0, 1050.0, last=1000.0)]
P2_AT_1002_5 = [buy(2, 2, 1002.5), place(2, 2, 977.40, last=1002.5)]  # 977.4375 rounded down
NO_ADDS = params(**{"p2.trigger_pct": 50.0})  # isolates stop and GTT rules from the adds
T = 61  # seconds: past the first GTT's min_interval_s (60)

SCENARIOS = [
    # --- The ladder table, P1 row; GTT: OCO [stop, target], LIMIT = trigger x (1 - 0.5%) ---
    Scenario(
        "P1 GTT is OCO at stop -2.5% and target +5%, LIMIT sells 0.5% under each trigger",
        prices=[1000.0],
        expect=[
            buy(1, 3, 1000.0),
            PlaceGtt(SYMBOL, 1, 3, 975.0, 1050.0, (970.10, 1044.75), 1000.0),
        ],
    ),
    Scenario(
        "tick: stop trigger and LIMITs round down, target trigger rounds up to 0.05",
        prices=[123.45],  # stop 120.36375, target 129.6225
        expect=[
            buy(1, 24, 123.45),
            PlaceGtt(SYMBOL, 1, 24, 120.35, 129.65, (119.70, 129.00), 123.45),
        ],
    ),
    # --- P2 row: P1 open and LTP >= P1 entry x (1 + 0.25%); single GTT, no target ---
    Scenario(
        "P2 joins at +0.25% over P1 as a runner with a single-leg GTT at its stop",
        prices=[1000.0, 1001.0, 1002.5],
        expect=[*P1_AT_1000, *P2_AT_1002_5],
    ),
    Scenario(
        "P2 waits while LTP is below P1 entry +0.25%",
        prices=[1000.0, 1002.45, 1001.0],
        expect=P1_AT_1000,
    ),
    # --- P3 row: P1, P2 open and LTP >= qty-weighted avg entry x (1 + 1%) ---
    Scenario(
        "P3 joins at +1% over the qty-weighted average of P1 and P2 (1001.0, not 1001.25)",
        prices=[1000.0, 1002.5, 1011.0, 1011.05],
        expect=[*P1_AT_1000, *P2_AT_1002_5, buy(3, 2, 1011.05), place(3, 2, 960.45, last=1011.05)],
    ),
    Scenario(
        "order of work 4: at most one add per price, P2 alone on a jump past both triggers",
        prices=[1000.0, 1020.0],
        expect=[*P1_AT_1000, buy(2, 2, 1020.0), place(2, 2, 994.5, last=1020.0)],
    ),
    Scenario(
        "order of work 4: P3 never on P2's price, it comes on the next one",
        prices=[1000.0, 1020.0, 1020.0],  # average (3000 + 2040) / 5 = 1008, P3 at 1018.08
        expect=[
            *P1_AT_1000,
            buy(2, 2, 1020.0),
            place(2, 2, 994.5, last=1020.0),
            buy(3, 2, 1020.0),
            place(3, 2, 969.0, last=1020.0),
        ],
    ),
    Scenario(
        "quantity: a leg whose floor(capital_per_position / LTP) is 0 is skipped",
        prices=[2995.0, 3002.5],
        expect=[
            buy(1, 1, 2995.0),
            place(1, 1, 2920.10, 3144.75, last=2995.0),
            skip(SkipReason.QTY_ZERO, 2),
        ],
    ),
    # --- never after any of its legs has been stopped out ---
    Scenario(
        "no leg after a stop-out: P2 stopped by the engine, no P3 (nor P2 again) on the rise",
        params=params(**{"p2.sl_pct": 1.0}),
        prices=[1000.0, 1002.5, 1004.0, 993.95, 1030.0, 1030.0],  # P2 stop 1004 x 0.99 = 993.96
        expect=[
            *P1_AT_1000,
            buy(2, 2, 1002.5),
            place(2, 2, 992.45, last=1002.5),
            exit_at(2, 993.95),
        ],
    ),
    Scenario(
        "no leg after a stop-out at the broker: P2's GTT fired, no P3 on the rise",
        params=params(**{"p2.sl_pct": 1.0}),
        prices=[1000.0, 1002.5, 992.45, 1030.0, 1030.0],
        expect=[*P1_AT_1000, buy(2, 2, 1002.5), place(2, 2, 992.45, last=1002.5)],
    ),
    # --- Trailing stop: stop = max(stop, high x (1 - sl_pct/100)), never down ---
    Scenario(
        "trailing: the stop follows the high and never moves down after a dip",
        params=NO_ADDS,
        prices=[1000.0, 1010.0, 990.0, 1005.0, 1020.0],
        expect=[
            *P1_AT_1000,
            RaiseStop(SYMBOL, 1, 1010.0, 984.75),
            RaiseStop(SYMBOL, 1, 1020.0, 994.5),
        ],
        trace_stops=True,
    ),
    Scenario(
        "trailing: each leg trails from its own high at its own sl_pct (P3 at 5%)",
        prices=[1000.0, 1020.0, 1020.0, 1030.0],
        expect=[
            *P1_AT_1000,
            RaiseStop(SYMBOL, 1, 1020.0, 994.5),
            buy(2, 2, 1020.0),
            place(2, 2, 994.5, last=1020.0),
            buy(3, 2, 1020.0),
            place(3, 2, 969.0, last=1020.0),
            RaiseStop(SYMBOL, 1, 1030.0, 1004.25),
            RaiseStop(SYMBOL, 2, 1030.0, 1004.25),
            RaiseStop(SYMBOL, 3, 1030.0, 978.5),
        ],
        trace_stops=True,
    ),
    # --- Order of work 3: exits when LTP <= the engine's stop ---
    Scenario(
        "exit: the engine exits a leg when LTP <= its trailed stop, not a tick before",
        params=NO_ADDS,
        prices=[1000.0, 1010.0, 984.80, 984.75, 980.0],  # stop 984.75, GTT still at 975
        expect=[*P1_AT_1000, exit_at(1, 984.75)],
    ),
    Scenario(
        "exit: every leg at or under its stop exits on the same price",
        prices=[1000.0, 1020.0, 1020.0, 1021.0, 995.45],  # P1, P2 stops 995.475; P3 969.95
        expect=[
            *P1_AT_1000,
            buy(2, 2, 1020.0),
            place(2, 2, 994.5, last=1020.0),
            buy(3, 2, 1020.0),
            place(3, 2, 969.0, last=1020.0),
            exit_at(1, 995.45),
            exit_at(2, 995.45),
        ],
    ),
    # --- GTT modifications: min_step_pct, min_interval_s, the 0.25% rule ---
    Scenario(
        "GTT min_step: no modify while the stop is under 0.5% above the trigger",
        params=NO_ADDS,
        prices=[1000.0, (T, 1004.0), (T + 1, 1005.0)],  # stops 978.9 (0.40%), 979.875 (0.50%)
        expect=[*P1_AT_1000, modify(1, 3, 979.85, 1050.0, last=1005.0)],
    ),
    Scenario(
        "GTT min_interval: placement counts; a modify within 60 s is deferred, then done",
        params=NO_ADDS,
        prices=[
            1000.0,
            (30, 1010.0),
            (59, 1009.0),
            (60, 1010.0),
            (61, 1020.0),
            (119, 1019.0),
            (120, 1020.0),
        ],
        expect=[
            *P1_AT_1000,
            modify(1, 3, 984.75, 1050.0, last=1010.0),
            modify(1, 3, 994.5, 1050.0, last=1020.0),
        ],
    ),
    Scenario(
        "GTT 0.25% rule: no modify while the new trigger is within 0.25% of LTP",
        params=params(**{"p2.trigger_pct": 50.0, "p1.target_pct": 20.0}),
        prices=[1000.0, (10, 1100.0), (T, 1074.5), (T + 1, 1075.5)],  # stop 1072.5
        expect=[
            buy(1, 3, 1000.0),
            place(1, 3, 975.0, 1200.0, last=1000.0),
            modify(1, 3, 1072.5, 1200.0, last=1075.5),
        ],
    ),
    Scenario(
        "GTT 0.25% rule: P1's OCO is not modified while LTP is within 0.25% of its target",
        params=NO_ADDS,
        prices=[1000.0, (T, 1048.0), (T + 1, 1047.0)],  # target 1050: 0.19%, then 0.29%
        expect=[*P1_AT_1000, modify(1, 3, 1021.8, 1050.0, last=1047.0)],
    ),
    Scenario(
        "GTT: runners' GTTs are modified at the stop alone, each on its own clock",
        prices=[1000.0, 1002.5, (60, 1010.0), (61, 1010.0)],  # P2's GTT is 1 s younger
        expect=[
            *P1_AT_1000,
            *P2_AT_1002_5,
            modify(1, 3, 984.75, 1050.0, last=1010.0),
            modify(2, 2, 984.75, last=1010.0),
        ],
    ),
    Scenario(
        "target: P1's target is left to its GTT; the engine does not sell at the target",
        params=NO_ADDS,
        prices=[1000.0, 1049.95, 1050.0, 1060.0],
        expect=P1_AT_1000,
    ),
    # --- Limits and safety: checked before every new leg ---
    Scenario(
        "max_positions: P2 is refused when the account already holds 90 legs",
        book=Book(open_legs=89, capital_in_use=100_000.0),
        prices=[1000.0, 1002.5],
        expect=[*P1_AT_1000, skip(SkipReason.MAX_POSITIONS, 2)],
    ),
    Scenario(
        "total_capital: P2 is refused when open legs would cost more than 240,000",
        book=Book(open_legs=10, capital_in_use=235_000.0),  # 235,000 + 3,000 + 2,005
        prices=[1000.0, 1002.5],
        expect=[*P1_AT_1000, skip(SkipReason.TOTAL_CAPITAL, 2)],
    ),
    Scenario(
        "total_capital: P2 may take the capital up to exactly 240,000",
        book=Book(open_legs=10, capital_in_use=234_995.0),
        prices=[1000.0, 1002.5],
        expect=[*P1_AT_1000, *P2_AT_1002_5],
    ),
    Scenario(
        "max_order_value: a leg whose notional exceeds it is refused",
        params=params(max_order_value=2000.0),
        prices=[1000.0, 1002.5],  # 2 x 1002.5 = 2005
        expect=[*P1_AT_1000, skip(SkipReason.MAX_ORDER_VALUE, 2)],
    ),
    Scenario(
        "max_daily_loss: below -5,000 no new leg, while stops keep trailing and GTTs move",
        book=Book(day_pnl=-5000.01),
        prices=[1000.0, 1002.5, (60, 1010.0)],
        expect=[
            *P1_AT_1000,
            RaiseStop(SYMBOL, 1, 1002.5, 977.4375),
            skip(SkipReason.DAILY_LOSS, 2),
            RaiseStop(SYMBOL, 1, 1010.0, 984.75),
            skip(SkipReason.DAILY_LOSS, 2),
            modify(1, 3, 984.75, 1050.0, last=1010.0),
        ],
        trace_stops=True,
    ),
    Scenario(
        "max_daily_loss: at exactly -5,000 entries continue (only below it they stop)",
        book=Book(day_pnl=-5000.0),
        prices=[1000.0, 1002.5],
        expect=[*P1_AT_1000, *P2_AT_1002_5],
    ),
    Scenario(
        "pause entries: no new leg; stops keep trailing and GTTs move",
        book=Book(entries_paused=True),
        prices=[1000.0, 1002.5, (60, 1010.0)],
        expect=[
            *P1_AT_1000,
            skip(SkipReason.PAUSED, 2),
            skip(SkipReason.PAUSED, 2),
            modify(1, 3, 984.75, 1050.0, last=1010.0),
        ],
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_ladder(sc: Scenario) -> None:
    assert replay(sc) == sc.expect


def test_scenario_names_are_unique() -> None:
    names = [sc.name for sc in SCENARIOS]
    assert len(names) == len(set(names))


# --- single rules, outside the tables ---------------------------------------------------


def test_on_fill_sets_high_to_the_fill_and_leaves_the_leg_protecting() -> None:
    leg, gtt = on_fill(SYMBOL, 1, 3, 1000.0, T0, DEFAULTS, last_price=1001.0)
    assert (leg.high, leg.stop, leg.state) == (1000.0, 975.0, LegState.PROTECTING)
    assert leg.target == pytest.approx(1050.0)
    assert gtt.last_price == 1001.0
    assert gtt.gtt_request().gtt_type is GttType.TWO_LEG
    assert gtt.gtt_request().triggers == (975.0, 1050.0)


def test_runner_gtt_is_single_leg_at_the_stop() -> None:
    leg, gtt = on_fill(SYMBOL, 3, 2, 1000.0, T0, DEFAULTS)
    assert (leg.target, leg.sl_pct) == (None, 5.0)
    request = gtt.gtt_request()
    assert (request.gtt_type, request.triggers, request.limit_prices) == (
        GttType.SINGLE,
        (950.0,),
        (945.25,),
    )


def test_a_leg_still_protecting_is_trailed_and_exited_but_its_gtt_not_modified() -> None:
    leg, _ = on_fill(SYMBOL, 1, 3, 1000.0, T0, NO_ADDS)
    ladder = Ladder(SYMBOL, legs=[leg])
    later = T0 + timedelta(minutes=5)
    assert on_price(ladder, 1010.0, later, NO_ADDS, Book()) == [
        RaiseStop(SYMBOL, 1, 1010.0, 984.75)
    ]
    assert on_price(ladder, 975.0, later, NO_ADDS, Book()) == [exit_at(1, 975.0)]


def test_a_closed_ladder_decides_nothing() -> None:
    sim = Replay(DEFAULTS)
    sim.run([1000.0, 975.0])  # P1's GTT fires at the broker
    assert sim.ladder is not None and sim.ladder.state is LadderState.CLOSED
    assert on_price(sim.ladder, 1100.0, T0 + timedelta(minutes=1), DEFAULTS, Book()) == []


def test_a_leg_pending_exit_is_never_exited_twice() -> None:
    leg, _ = on_fill(SYMBOL, 1, 3, 1000.0, T0, DEFAULTS)
    leg.state = LegState.PENDING_EXIT
    ladder = Ladder(SYMBOL, legs=[leg])
    assert on_price(ladder, 900.0, T0 + timedelta(seconds=5), DEFAULTS, Book()) == []


def test_p2_with_a_cancelled_entry_is_not_bought_again() -> None:
    p1, _ = on_fill(SYMBOL, 1, 3, 1000.0, T0, DEFAULTS)
    p2, _ = on_fill(SYMBOL, 2, 2, 1002.5, T0, DEFAULTS)
    p2.state = LegState.CANCELLED
    ladder = Ladder(SYMBOL, legs=[p1, p2])
    actions = on_price(ladder, 1030.0, T0 + timedelta(seconds=5), DEFAULTS, Book())
    assert not any(isinstance(a, Buy | Skip) for a in actions)


def test_the_p1_target_fires_at_the_broker_in_the_replay() -> None:
    sim = Replay(NO_ADDS)
    sim.run([1000.0, 1050.0])
    assert sim.gtt_fired == [(1, ExitReason.TARGET)]
    assert sim.ladder is not None and not sim.ladder.is_stopped_out


def test_a_stop_above_the_trail_is_kept_on_a_new_high() -> None:
    """The stop never moves down, even when high x (1 - sl_pct) would be lower (a reloaded leg)."""
    leg, _ = on_fill(SYMBOL, 1, 3, 1000.0, T0, NO_ADDS)
    leg.stop = 990.0
    ladder = Ladder(SYMBOL, legs=[leg])
    assert on_price(ladder, 1001.0, T0 + timedelta(seconds=1), NO_ADDS, Book()) == [
        RaiseStop(SYMBOL, 1, 1001.0, 990.0)
    ]


def test_a_ladder_marked_stopped_out_adds_no_leg() -> None:
    leg, _ = on_fill(SYMBOL, 1, 3, 1000.0, T0, DEFAULTS)
    ladder = Ladder(SYMBOL, legs=[leg], state=LadderState.STOPPED_OUT, stopped_out=True)
    actions = on_price(ladder, 1010.0, T0 + timedelta(seconds=1), DEFAULTS, Book())
    assert not any(isinstance(a, Buy | Skip) for a in actions)


# Live: the exchange fires a GTT before its order update arrives. STRATEGY.md "Order of work":
# a leg whose GTT trigger the price reached counts as exiting for step 4 (no add on that price).
GTT_REACHED = [
    pytest.param(1050.0, id="P1 target trigger reached exactly"),
    pytest.param(1060.0, id="price above P1 target trigger"),
]


@pytest.mark.parametrize("ltp", GTT_REACHED)
def test_no_leg_is_added_on_a_price_that_reaches_a_gtt_trigger(ltp: float) -> None:
    leg, gtt = on_fill(SYMBOL, 1, 3, 1000.0, T0, DEFAULTS)
    ladder = Ladder(SYMBOL, legs=[gtt_placed(leg, gtt, T0)])  # OCO [975.0, 1050.0]
    actions = on_price(ladder, ltp, T0 + timedelta(seconds=61), DEFAULTS, Book())
    assert not any(isinstance(a, Buy | Skip | ModifyGtt) for a in actions)
    assert not any(isinstance(a, Exit) for a in actions)  # the GTT's own order sells it


def test_p2_is_added_just_under_the_p1_target_trigger() -> None:
    leg, gtt = on_fill(SYMBOL, 1, 3, 1000.0, T0, DEFAULTS)
    ladder = Ladder(SYMBOL, legs=[gtt_placed(leg, gtt, T0)])
    actions = on_price(ladder, 1049.95, T0 + timedelta(seconds=1), DEFAULTS, Book())
    assert buy(2, 2, 1049.95) in actions
