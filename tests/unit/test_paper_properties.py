"""Property tests of PaperBroker over random price paths and random orders and GTTs.

Whatever happens, the broker never sells more than it holds, never fires a GTT twice,
and its books balance: cash + holdings at cost = starting cash + realised P&L − charges.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.paper_support import (
    Clock,
    Recorder,
    limit,
    make_broker,
    market,
    oco_gtt,
    params,
    single_gtt,
)
from Webapp.broker.base import (
    GttState,
    InputRejected,
    OrderRejected,
    OrderState,
    OrderType,
    Side,
    round_down_to_tick,
    round_up_to_tick,
    shares_held,
)

SYMBOLS = ("INFY", "TCS")
START_PRICES = {"INFY": 1000.0, "TCS": 250.0}
CASH = 50_000.0

symbol = st.sampled_from(SYMBOLS)
pct = st.floats(min_value=0.3, max_value=6.0, allow_nan=False)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), symbol, st.floats(min_value=-4.0, max_value=4.0)),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=45)),
        st.tuples(
            st.just("order"),
            symbol,
            st.sampled_from(Side),
            st.integers(min_value=1, max_value=25),
            st.one_of(st.none(), st.floats(min_value=-3.0, max_value=3.0)),  # None: MARKET
        ),
        st.tuples(
            st.just("gtt"),
            symbol,
            st.integers(min_value=1, max_value=25),
            pct,
            st.one_of(st.none(), pct),  # None: single, else the target distance
            st.floats(min_value=0.0, max_value=2.0),  # the limit's buffer below the trigger
        ),
        st.tuples(st.just("delete_gtt"), st.integers(min_value=1, max_value=10)),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=10)),
    ),
    max_size=40,
)


@dataclass
class World:
    """The broker, the prices it has seen, and what the checks remember between steps."""

    clock: Clock = field(default_factory=Clock)
    prices: dict[str, float] = field(default_factory=lambda: dict(START_PRICES))
    updates: Recorder = field(default_factory=Recorder)
    gtt_orders: dict[int, str] = field(default_factory=dict)  # GTT id → the one order it placed

    def __post_init__(self) -> None:
        self.broker = make_broker(clock=self.clock, cash=CASH, p=params(charges=True))
        self.broker.on_order_update(self.updates)
        for name, price in self.prices.items():
            self.broker.on_price(name, price)

    def run(self, step: tuple) -> None:
        kind, *args = step
        # A refusal is a fine outcome; the invariants must hold either way.
        with contextlib.suppress(InputRejected, OrderRejected):
            getattr(self, kind)(*args)

    def tick(self, name: str, move_pct: float) -> None:
        price = max(1.0, round_down_to_tick(self.prices[name] * (1 + move_pct / 100)))
        self.prices[name] = price
        self.broker.on_price(name, price)

    def wait(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.broker.check_timeouts()

    def order(self, name: str, side: Side, quantity: int, offset_pct: float | None) -> None:
        tag = f"T{len(self.updates.updates)}"
        if offset_pct is None:
            self.broker.place_order(market(side, quantity, name, tag))
        else:
            price = round_down_to_tick(self.prices[name] * (1 + offset_pct / 100))
            self.broker.place_order(limit(side, quantity, max(price, 0.05), name, tag))

    def gtt(
        self, name: str, quantity: int, stop_pct: float, target_pct: float | None, buffer: float
    ) -> None:
        last = self.prices[name]
        stop = round_down_to_tick(last * (1 - stop_pct / 100))
        stop_limit = max(0.05, round_down_to_tick(stop * (1 - buffer / 100)))
        if target_pct is None:
            self.broker.place_gtt(single_gtt(stop, stop_limit, last, quantity, name))
            return
        target = round_up_to_tick(last * (1 + target_pct / 100))
        target_limit = round_down_to_tick(target * (1 - buffer / 100))
        self.broker.place_gtt(
            oco_gtt(stop, target, (stop_limit, target_limit), last, quantity, name)
        )

    def delete_gtt(self, gtt_id: int) -> None:
        self.broker.delete_gtt(gtt_id)

    def cancel(self, index: int) -> None:
        open_orders = [o for o in self.broker.orders() if not o.state.is_final]
        if open_orders:
            self.broker.cancel_order(open_orders[index % len(open_orders)].order_id)

    # --- the invariants ------------------------------------------------------------------

    def check(self) -> None:
        orders = self.broker.orders()  # one IST day: every order of the run
        held_now = shares_held(self.broker.holdings(), self.broker.positions())
        for name in SYMBOLS:
            bought = sum(
                o.filled_quantity for o in orders if o.symbol == name and o.side is Side.BUY
            )
            sold = sum(
                o.filled_quantity for o in orders if o.symbol == name and o.side is Side.SELL
            )
            held = held_now.get(name, 0)
            assert sold <= bought, f"{name}: sold {sold} of {bought} bought"
            assert held == bought - sold

        for gtt in self.broker.gtts():
            assert len(gtt.results) <= (0 if gtt.state is GttState.ACTIVE else 1)
            for result in gtt.results:
                # Once fired, a GTT's order never changes, and no other GTT shares it.
                assert self.gtt_orders.setdefault(gtt.gtt_id, result.order_id) == result.order_id
        assert len(set(self.gtt_orders.values())) == len(self.gtt_orders)
        untagged = [o.order_id for o in orders if o.tag is None]  # the GTTs' own orders
        assert sorted(untagged) == sorted(self.gtt_orders.values())
        for order_id in untagged:  # placed once: one "open" before anything else
            assert self.updates.states(order_id).count("open") >= 1
            assert self.updates.states(order_id)[0] == "open"
            history = self.broker.order_history(order_id)
            assert history[0].order_type is OrderType.LIMIT
            assert sum(o.state is OrderState.FILLED for o in history) <= 1

        books = self.broker.summary()
        assert books.cash >= -1e-6, "cash went negative"
        assert self.broker.margins().available_cash >= -1e-6
        assert books.cash + books.holdings_at_cost == pytest.approx(
            CASH + books.realised_pnl - books.charges, abs=1e-6
        )
        # At market value: the run is one IST day from no holdings, so every share is in
        # the day's positions, whose P&L is Kite's (sell value − buy value + net × LTP).
        positions = self.broker.positions()
        market_value = sum(p.quantity * p.last_price for p in positions)
        assert books.cash + market_value == pytest.approx(
            CASH - books.charges + sum(p.pnl for p in positions), abs=1e-6
        )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_random_trading_never_oversells_never_fires_twice_and_the_books_balance(path):
    world = World()
    for step in path:
        world.run(step)
        world.check()


@settings(max_examples=100, deadline=None)
@given(
    quantity=st.integers(min_value=1, max_value=20),
    moves=st.lists(st.floats(min_value=-3.0, max_value=3.0), min_size=1, max_size=40),
    two_leg=st.booleans(),
)
def test_a_gtt_guarding_the_whole_holding_sells_it_at_most_once(quantity, moves, two_leg):
    world = World()
    world.order("INFY", Side.BUY, quantity, None)
    world.gtt("INFY", quantity, 2.5, 5.0 if two_leg else None, 0.5)
    for move in moves:
        world.tick("INFY", move)
        world.wait(5)
    world.check()  # one buy, so an oversell or a second fire would still show at the end
    (gtt,) = world.broker.gtts()
    sells = [o for o in world.broker.orders() if o.side is Side.SELL]
    assert len(sells) == (0 if gtt.state is GttState.ACTIVE else 1)
    if sells and sells[0].state is OrderState.FILLED:
        assert shares_held(world.broker.holdings(), world.broker.positions()) == {}
