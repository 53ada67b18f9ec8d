"""PaperBroker orders: fills by STRATEGY.md's "Paper fills" rules, refusals, history, updates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.unit.paper_support import (
    SYMBOL,
    Clock,
    Recorder,
    bought,
    limit,
    make_broker,
    market,
    params,
    shares,
)
from Webapp.broker.base import (
    InputRejected,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
    shares_held,
)
from Webapp.broker.charges import order_charges

BUY, SELL = Side.BUY, Side.SELL


@dataclass(frozen=True)
class OrderScenario:
    """Hold 10 shares bought at LTP 1000, see LTP `ltp`, place `order`, then see `prices`."""

    name: str
    order: OrderRequest
    ltp: float
    prices: tuple[float, ...]
    fill: float | None  # the fill price, None when the order still rests


SCENARIOS = [
    OrderScenario("market buy pays LTP plus 5 bps", market(BUY, 10), 1000.0, (), 1000.50),
    OrderScenario("a buy's fill rounds up to the tick", market(BUY, 10), 1001.0, (), 1001.55),
    OrderScenario("a market sell gets LTP less 5 bps", market(SELL, 10), 1000.0, (), 999.50),
    OrderScenario("a sell's fill rounds down to the tick", market(SELL, 10), 1001.0, (), 1000.45),
    OrderScenario(
        "LIMIT buy rests above its limit and fills at it",
        limit(BUY, 10, 995.0),
        1000.0,
        (995.50, 995.05, 995.0),
        995.0,
    ),
    OrderScenario(
        "LIMIT buy on a gap down fills at LTP plus slippage",
        limit(BUY, 10, 995.0),
        1000.0,
        (990.0,),
        990.50,
    ),
    OrderScenario(
        "LIMIT sell rests below its limit and fills at it",
        limit(SELL, 10, 1005.0),
        1000.0,
        (1004.95, 1005.0),
        1005.0,
    ),
    OrderScenario(
        "LIMIT sell on a gap up fills at LTP less slippage",
        limit(SELL, 10, 1005.0),
        1000.0,
        (1010.0,),
        1009.45,
    ),
    OrderScenario(
        "a marketable LIMIT buy fills at once, at the market price",
        limit(BUY, 10, 1010.0),
        1000.0,
        (),
        1000.50,
    ),
    OrderScenario(
        "LIMIT buy at the LTP fills at its limit, never above",
        limit(BUY, 10, 1000.0),
        1000.0,
        (),
        1000.0,
    ),
    OrderScenario(
        "LIMIT sell the price never reaches keeps resting",
        limit(SELL, 10, 1005.0),
        1000.0,
        (1001.0, 1004.95),
        None,
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_order_fill_rules(sc):
    broker = make_broker()
    bought(broker, 10, 1000.0)  # at 1000.50
    cash_before = broker.summary().cash
    broker.on_price(SYMBOL, sc.ltp)
    placed = broker.place_order(sc.order)
    for price in sc.prices:
        broker.on_price(SYMBOL, price)

    (order,) = [o for o in broker.orders() if o.order_id == placed.order_id]
    if sc.fill is None:
        assert order.state is OrderState.OPEN
        assert broker.summary().cash == cash_before
        return
    assert (order.state, order.filled_quantity, order.average_price) == (
        OrderState.FILLED,
        10,
        sc.fill,
    )
    sign = -1 if sc.order.side is BUY else 1
    assert broker.summary().cash == pytest.approx(cash_before + sign * 10 * sc.fill)
    held = 20 if sc.order.side is BUY else 0
    assert shares(broker) == held


def test_a_market_order_without_a_known_price_is_refused_not_left_resting():
    broker = make_broker()
    with pytest.raises(InputRejected, match="no last price known"):
        broker.place_order(market(BUY, 1))
    assert broker.orders() == []


def test_the_price_source_prices_orders_between_ticks():
    prices = {SYMBOL: 2000.0}
    broker = make_broker(ltp=prices.get)
    assert broker.place_order(market(BUY, 1)).average_price == 2001.0


def test_selling_more_than_is_held_is_refused_and_records_nothing():
    broker = make_broker()
    bought(broker, 5, 1000.0)
    with pytest.raises(InputRejected, match="cannot sell 6: 5 held"):
        broker.place_order(market(SELL, 6))
    assert [o.side for o in broker.orders()] == [BUY]


def test_shares_in_an_open_sell_order_cannot_be_sold_again():
    broker = make_broker()
    bought(broker, 5, 1000.0)
    broker.place_order(limit(SELL, 3, 1100.0))
    with pytest.raises(InputRejected, match="3 already in open sell orders"):
        broker.place_order(market(SELL, 3))
    assert broker.place_order(market(SELL, 2)).state is OrderState.FILLED


def test_a_buy_cash_cannot_cover_is_rejected_and_can_be_found_by_its_tag():
    broker = make_broker(cash=5_000.0)
    broker.on_price(SYMBOL, 1000.0)
    with pytest.raises(OrderRejected, match="insufficient funds"):
        broker.place_order(market(BUY, 5, tag="LOSTREPLY1"))  # 5 × 1000.50 > 5,000
    found = broker.find_order_by_tag("LOSTREPLY1")
    assert found is not None and found.state is OrderState.REJECTED
    assert broker.summary().cash == 5_000.0
    assert shares(broker) == 0


def test_an_open_limit_buy_holds_its_cash_back():
    broker = make_broker(cash=10_000.0)
    broker.on_price(SYMBOL, 1000.0)
    broker.place_order(limit(BUY, 6, 990.0))
    margins = broker.margins()
    assert (margins.available_cash, margins.utilised) == (4_060.0, 5_940.0)
    with pytest.raises(OrderRejected, match="insufficient funds"):
        broker.place_order(limit(BUY, 5, 990.0))


def test_a_limit_price_off_the_tick_is_refused():
    broker = make_broker()
    broker.on_price(SYMBOL, 1000.0)
    with pytest.raises(InputRejected, match="not on the 0.05 tick"):
        broker.place_order(limit(BUY, 1, 999.97))


def test_every_state_change_is_in_the_history_and_pushed_as_an_update():
    broker = make_broker()
    updates = Recorder()
    broker.on_order_update(updates)
    broker.on_price(SYMBOL, 1000.0)
    order = broker.place_order(limit(BUY, 2, 995.0))
    broker.modify_order(order.order_id, price=996.0)
    broker.on_price(SYMBOL, 996.0)

    history = broker.order_history(order.order_id)
    assert [(o.state.value, o.price) for o in history] == [
        ("open", 995.0),
        ("open", 996.0),
        ("filled", 996.0),
    ]
    assert updates.states(order.order_id) == ["open", "open", "filled"]
    assert {u.source for u in updates.updates} == {"paper"}
    assert [u.order for u in updates.updates] == history


def test_modifying_a_resting_order_to_market_fills_it_at_once():
    broker = make_broker()
    bought(broker, 4, 1000.0)
    order = broker.place_order(limit(SELL, 4, 1020.0))
    broker.on_price(SYMBOL, 1010.0)
    broker.modify_order(order.order_id, order_type=OrderType.MARKET)
    filled = broker.order_history(order.order_id)[-1]
    assert (filled.state, filled.order_type, filled.average_price) == (
        OrderState.FILLED,
        OrderType.MARKET,
        1009.45,
    )


def test_cancel_frees_the_order_and_a_final_order_cannot_change():
    broker = make_broker()
    bought(broker, 4, 1000.0)
    order = broker.place_order(limit(SELL, 4, 1020.0))
    broker.cancel_order(order.order_id)
    assert broker.order_history(order.order_id)[-1].state is OrderState.CANCELLED
    with pytest.raises(InputRejected, match="the order is cancelled"):
        broker.cancel_order(order.order_id)
    with pytest.raises(InputRejected, match="the order is cancelled"):
        broker.modify_order(order.order_id, price=1030.0)
    assert broker.place_order(market(SELL, 4)).state is OrderState.FILLED


def test_an_unknown_order_id_is_refused():
    broker = make_broker()
    with pytest.raises(InputRejected, match="no such order"):
        broker.order_history("nope")


def test_an_exit_limit_order_becomes_market_after_the_exit_timeout():
    clock = Clock()
    broker = make_broker(clock=clock)
    bought(broker, 4, 1000.0)
    order = broker.place_order(limit(SELL, 4, 1020.0))
    clock.advance(29)
    broker.check_timeouts()
    assert broker.order_history(order.order_id)[-1].state is OrderState.OPEN
    clock.advance(1)
    broker.check_timeouts()  # 30 s open: now a market order at LTP less slippage
    history = broker.order_history(order.order_id)
    assert [(o.state.value, o.order_type.value) for o in history] == [
        ("open", "LIMIT"),
        ("open", "MARKET"),
        ("filled", "MARKET"),
    ]
    assert history[-1].average_price == 999.50
    assert "exit timeout" in history[1].status_message


def test_a_resting_limit_buy_is_not_an_exit_and_never_times_out():
    clock = Clock()
    broker = make_broker(clock=clock)
    broker.on_price(SYMBOL, 1000.0)
    order = broker.place_order(limit(BUY, 1, 990.0))
    clock.advance(3600)
    broker.check_timeouts()
    broker.on_price(SYMBOL, 1000.0)
    assert broker.order_history(order.order_id)[-1].state is OrderState.OPEN


def test_buys_pay_and_sells_receive_net_of_charges_with_dp_once_per_scrip_per_day():
    clock = Clock()
    p = params(charges=True)
    broker = make_broker(clock=clock, p=p)
    rates = p.charges
    broker.on_price(SYMBOL, 1000.0)
    broker.place_order(market(BUY, 30))
    broker.place_order(market(SELL, 10))
    broker.place_order(market(SELL, 10))  # same scrip, same day: no second DP charge
    clock.advance(timedelta(days=1).total_seconds())
    broker.place_order(market(SELL, 10))  # a new day: DP again

    buy = order_charges(BUY, 30, 1000.50, rates)
    first = order_charges(SELL, 10, 999.50, rates, dp_applies=True)
    later = order_charges(SELL, 10, 999.50, rates, dp_applies=False)
    assert first.total > later.total  # the DP charge is real money
    expected = (
        100_000.0 - 30 * 1000.50 - buy.total + 3 * 10 * 999.50 - 2 * first.total - later.total
    )
    summary = broker.summary()
    assert summary.cash == pytest.approx(expected)
    assert summary.charges == pytest.approx(buy.total + 2 * first.total + later.total)


def test_positions_are_the_day_net_and_holdings_carry_the_average_cost():
    clock = Clock()
    broker = make_broker(clock=clock)
    broker.on_price(SYMBOL, 1000.0)
    broker.place_order(market(BUY, 10))  # 1000.50
    broker.on_price(SYMBOL, 1100.0)
    broker.place_order(market(BUY, 10))  # 1100.55
    broker.place_order(market(SELL, 5))  # 1099.45
    (position,) = broker.positions()
    assert (position.quantity, position.last_price, position.product) == (15, 1100.0, "CNC")
    assert position.average_price == pytest.approx((10 * 1000.50 + 10 * 1100.55) / 20)
    assert position.pnl == pytest.approx(5 * 1099.45 - 10 * 1000.50 - 10 * 1100.55 + 15 * 1100.0)
    assert broker.holdings() == []  # as on Kite: today's buys are a position until tomorrow

    clock.advance(timedelta(days=1).total_seconds())
    assert broker.positions() == []  # a new day starts flat; the shares are holdings now
    (holding,) = broker.holdings()
    assert (holding.quantity, holding.used_quantity) == (15, 0)
    assert holding.average_price == pytest.approx(1050.525)
    assert broker.orders() == []  # today's orders only, and nothing was left open


def test_paper_reports_like_kite_so_shares_held_counts_each_share_once():
    """Today's buys as a CNC position; holdings as the day opened, `used_quantity` sold."""
    clock = Clock()
    broker = make_broker(clock=clock, p=params(slippage_bps=0.0, charges=False))
    broker.on_price(SYMBOL, 1000.0)
    broker.place_order(market(BUY, 10))
    assert shares_held(broker.holdings(), broker.positions()) == {SYMBOL: 10}

    clock.advance(timedelta(days=1).total_seconds())
    broker.on_price(SYMBOL, 1100.0)
    broker.place_order(market(BUY, 5))
    broker.place_order(market(SELL, 8))  # 5 against today's buy, 3 out of the holding
    (holding,) = broker.holdings()
    assert (holding.quantity, holding.used_quantity, holding.average_price) == (10, 3, 1000.0)
    (position,) = broker.positions()
    assert (position.symbol, position.quantity, position.product) == (SYMBOL, -3, "CNC")
    assert shares_held(broker.holdings(), broker.positions()) == {SYMBOL: 7}

    broker.place_order(market(SELL, 7))
    assert (broker.holdings()[0].quantity, broker.holdings()[0].used_quantity) == (10, 10)
    assert shares_held(broker.holdings(), broker.positions()) == {}
    clock.advance(timedelta(days=1).total_seconds())
    assert broker.holdings() == [] and broker.positions() == []
