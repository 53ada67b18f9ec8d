"""PaperBroker GTTs: Kite's constraints, triggers (once), the LIMIT sell, timeout to market."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.paper_support import (
    SYMBOL,
    Clock,
    Recorder,
    bought,
    make_broker,
    market,
    oco_gtt,
    shares,
    single_gtt,
)
from Webapp.broker import paper_book as book
from Webapp.broker.base import (
    GttRequest,
    GttState,
    GttType,
    InputRejected,
    OrderState,
    OrderType,
    Side,
)

BUY, SELL = Side.BUY, Side.SELL
START_CASH = 100_000.0
BUY_FILL = 1000.50  # 10 shares bought at LTP 1000 with 5 bps slippage


@dataclass(frozen=True)
class GttScenario:
    """Hold 10 bought at LTP 1000, place `gtt`, then prices at (seconds after, LTP)."""

    name: str
    gtt: GttRequest
    prices: tuple[tuple[float, float], ...]
    leg: int | None  # the leg that fired, None when the GTT stays active
    sold: tuple[str, float] | None  # (order type it filled as, fill price); None: not sold
    history: tuple[str, ...] = ()  # the GTT order's states, oldest first


STOP = single_gtt(975.0, 970.10, 1000.0, 10)
OCO = oco_gtt(975.0, 1050.0, (970.10, 1044.75), 1000.0, 10)

SCENARIOS = [
    GttScenario(
        "single stop fires at its trigger; the LIMIT sell fills at once at LTP less slippage",
        STOP,
        ((1, 990.0), (2, 975.0)),
        leg=0,
        sold=("LIMIT", 974.50),  # max(970.10, 975 × 0.9995 = 974.5125 → 974.50)
        history=("open", "filled"),
    ),
    GttScenario(
        "a price a tick above the stop never fires it",
        STOP,
        ((1, 990.0), (2, 975.05), (3, 1100.0)),
        leg=None,
        sold=None,
    ),
    GttScenario(
        "a gap below the limit rests, then the exit timeout sells at market",
        STOP,
        ((1, 960.0), (20, 965.0), (31, 962.0)),  # triggered at 1 s; 30 s later still open
        leg=0,
        sold=("MARKET", 961.50),  # 962 × 0.9995 = 961.519 → 961.50
        history=("open", "open", "filled"),
    ),
    GttScenario(
        "a gap below the limit that recovers before the timeout fills the LIMIT",
        STOP,
        ((1, 960.0), (10, 971.0)),
        leg=0,
        sold=("LIMIT", 970.50),  # max(970.10, 971 × 0.9995 = 970.5145 → 970.50)
        history=("open", "filled"),
    ),
    GttScenario(
        "a gap below the limit that recovers above the trigger fills the LIMIT",
        STOP,
        ((1, 960.0), (10, 980.0)),
        leg=0,
        sold=("LIMIT", 979.50),  # max(970.10, 980 × 0.9995 = 979.51 → 979.50)
        history=("open", "filled"),
    ),
    GttScenario(
        "just before the timeout a gapped sell still rests",
        STOP,
        ((1, 960.0), (30.9, 965.0)),
        leg=0,
        sold=None,
        history=("open",),
    ),
    GttScenario(
        "two-leg: the target leg fires at the upper trigger",
        OCO,
        ((1, 1020.0), (2, 1050.0)),
        leg=1,
        sold=("LIMIT", 1049.45),  # max(1044.75, 1050 × 0.9995 = 1049.475 → 1049.45)
        history=("open", "filled"),
    ),
    GttScenario(
        "two-leg: the stop leg fires at the lower trigger, at its own limit",
        OCO,
        ((1, 974.0),),
        leg=0,
        sold=("LIMIT", 973.50),
        history=("open", "filled"),
    ),
    GttScenario(
        "two-leg: a price between the triggers fires nothing",
        OCO,
        ((1, 975.05), (2, 1049.95)),
        leg=None,
        sold=None,
    ),
    GttScenario(
        "a single trigger placed above the last price fires on the way up",
        single_gtt(1030.0, 1025.0, 1000.0, 10),
        ((1, 1029.95), (2, 1030.0)),
        leg=0,
        sold=("LIMIT", 1029.45),
        history=("open", "filled"),
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_gtt_scenarios(sc):
    clock = Clock()
    broker = make_broker(clock=clock)
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(sc.gtt)
    start = clock.now
    for seconds, price in sc.prices:
        clock.advance((start - clock.now).total_seconds() + seconds)
        broker.on_price(SYMBOL, price)

    gtt = broker.get_gtt(gtt_id)
    if sc.leg is None:
        assert (gtt.state, gtt.results) == (GttState.ACTIVE, ())
        assert shares(broker) == 10
        return
    assert gtt.state is GttState.TRIGGERED
    (result,) = gtt.results
    assert result.leg == sc.leg
    history = broker.order_history(result.order_id)
    assert tuple(o.state.value for o in history) == sc.history
    placed = history[0]
    assert (placed.side, placed.order_type, placed.price, placed.quantity) == (
        SELL,
        OrderType.LIMIT,
        sc.gtt.limit_prices[sc.leg],
        10,
    )
    cash = broker.summary().cash
    if sc.sold is None:
        assert shares(broker) == 10
        assert cash == pytest.approx(START_CASH - 10 * BUY_FILL)
        return
    order_type, price = sc.sold
    assert (history[-1].order_type.value, history[-1].average_price) == (order_type, price)
    assert shares(broker) == 0
    assert cash == pytest.approx(START_CASH - 10 * BUY_FILL + 10 * price)


# --- Kite's constraints ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            oco_gtt(975.0, 1050.0, (970.10, 1044.75), 1060.0, 10),
            "last price strictly between its triggers",
        ),
        (
            oco_gtt(975.0, 1050.0, (970.10, 1044.75), 970.0, 10),
            "last price strictly between its triggers",
        ),
        (single_gtt(997.50, 990.0, 1000.0, 10), "Kite needs more than 0.25%"),  # exactly 0.25%
        (single_gtt(998.0, 990.0, 1000.0, 10), "Kite needs more than 0.25%"),
        (oco_gtt(975.0, 1002.0, (970.10, 1000.0), 1000.0, 10), "Kite needs more than 0.25%"),
        (single_gtt(975.03, 970.10, 1000.0, 10), "not on the 0.05 tick"),
        (single_gtt(975.0, 970.10, 0.0, 10), "last_price must be a price > 0"),
        (single_gtt(975.0, 970.10, 1000.0, 11), "quantity 11 exceeds the 10 shares held"),
        (
            GttRequest(SYMBOL, GttType.SINGLE, (975.0,), (970.10,), 1000.0, 10, side=BUY),
            "only SELL GTTs",
        ),
    ],
)
def test_a_gtt_kite_would_refuse_is_refused_with_the_rule(request_, message):
    broker = make_broker()
    bought(broker, 10, 1000.0)
    with pytest.raises(InputRejected, match=message):
        broker.place_gtt(request_)
    assert broker.gtts() == []


def test_shares_already_covered_by_a_gtt_cannot_be_covered_again():
    broker = make_broker()
    bought(broker, 10, 1000.0)
    broker.place_gtt(single_gtt(975.0, 970.10, 1000.0, 6))
    with pytest.raises(InputRejected, match="exceeds the 4 shares held and not already covered"):
        broker.place_gtt(single_gtt(975.0, 970.10, 1000.0, 5))
    broker.place_gtt(single_gtt(975.0, 970.10, 1000.0, 4))


def test_at_most_250_active_gtts():
    broker = make_broker(cash=1_000_000.0)
    bought(broker, 251, 100.0)
    for _ in range(250):
        broker.place_gtt(single_gtt(97.5, 97.0, 100.0, 1))
    with pytest.raises(InputRejected, match="250 active GTTs"):
        broker.place_gtt(single_gtt(97.5, 97.0, 100.0, 1))
    assert broker.delete_gtt(1) is GttState.ACTIVE
    broker.place_gtt(single_gtt(97.5, 97.0, 100.0, 1))  # a deleted one frees its place


# --- delete and modify -----------------------------------------------------------------


def test_delete_returns_active_for_a_live_gtt_and_triggered_for_a_fired_one():
    broker = make_broker()
    bought(broker, 10, 1000.0)
    live = broker.place_gtt(single_gtt(975.0, 970.10, 1000.0, 5))
    fired = broker.place_gtt(single_gtt(980.0, 975.0, 1000.0, 5))
    broker.on_price(SYMBOL, 979.0)  # fires only the 980 stop

    assert broker.delete_gtt(live) is GttState.ACTIVE
    assert broker.get_gtt(live).state is GttState.DELETED
    assert broker.delete_gtt(live) is GttState.DELETED
    assert broker.delete_gtt(fired) is GttState.TRIGGERED  # wait for its order, never sell twice
    assert broker.get_gtt(fired).state is GttState.TRIGGERED
    with pytest.raises(InputRejected, match="no such GTT"):
        broker.delete_gtt(99)


def test_a_deleted_gtt_never_fires():
    broker = make_broker()
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(STOP)
    broker.delete_gtt(gtt_id)
    broker.on_price(SYMBOL, 900.0)
    assert shares(broker) == 10


def test_modify_moves_the_trigger_and_the_new_trigger_is_the_one_that_fires():
    broker = make_broker()
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(STOP)
    broker.on_price(SYMBOL, 1040.0)
    broker.modify_gtt(gtt_id, single_gtt(1014.0, 1009.0, 1040.0, 10))  # trailing up
    broker.on_price(SYMBOL, 1014.0)
    gtt = broker.get_gtt(gtt_id)
    assert (gtt.state, gtt.triggers) == (GttState.TRIGGERED, (1014.0,))
    assert broker.order_history(gtt.results[0].order_id)[-1].average_price == 1013.45


def test_modify_of_a_fired_gtt_is_refused():
    broker = make_broker()
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(STOP)
    broker.on_price(SYMBOL, 975.0)
    with pytest.raises(InputRejected, match="the GTT is triggered"):
        broker.modify_gtt(gtt_id, single_gtt(960.0, 955.0, 975.0, 10))


def test_modify_still_checks_kite_rules_against_the_new_last_price():
    broker = make_broker()
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(STOP)
    with pytest.raises(InputRejected, match="Kite needs more than 0.25%"):
        broker.modify_gtt(gtt_id, single_gtt(999.0, 995.0, 1000.0, 10))
    assert broker.get_gtt(gtt_id).triggers == (975.0,)


# --- never twice, never more than held ---------------------------------------------------


def test_a_gtt_fires_once_however_many_prices_cross_it():
    broker = make_broker()
    updates = Recorder()
    broker.on_order_update(updates)
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(single_gtt(975.0, 900.0, 1000.0, 10))
    for price in (970.0, 960.0, 1000.0, 950.0):
        broker.on_price(SYMBOL, price)
    (result,) = broker.get_gtt(gtt_id).results
    gtt_orders = [o for o in broker.orders() if o.side is SELL]
    assert [o.order_id for o in gtt_orders] == [result.order_id]
    assert updates.states(result.order_id) == ["open", "filled"]


def test_a_gtt_whose_shares_were_sold_meanwhile_is_rejected_not_oversold():
    broker = make_broker()
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(STOP)
    broker.place_order(market(SELL, 10))  # sold by hand, GTT left in place
    broker.on_price(SYMBOL, 970.0)
    gtt = broker.get_gtt(gtt_id)
    (result,) = gtt.results
    assert gtt.state is GttState.TRIGGERED
    assert result.status == "rejected"
    assert "insufficient holdings" in result.rejection_reason
    assert broker.order_history(result.order_id)[-1].state is OrderState.REJECTED
    assert shares(broker) == 0


TRIGGER = st.integers(min_value=1, max_value=4000).map(lambda ticks: ticks * 0.5)
A_GTT = st.one_of(
    st.tuples(TRIGGER, TRIGGER).map(
        lambda t: (GttType.TWO_LEG, (min(t), max(t) + 0.5), (min(t) + max(t)) / 2)
    ),
    st.tuples(TRIGGER, TRIGGER).map(lambda t: (GttType.SINGLE, (t[0],), t[1])),
)


@given(gtts=st.lists(A_GTT, max_size=4), ltp=TRIGGER)
def test_a_price_inside_the_quiet_range_fires_none_of_the_gtts_and_outside_it_one(gtts, ltp):
    """The paper exchange skips a price inside the quiet range: exactly the prices that
    fire none of the symbol's GTTs one by one."""
    low, high = book.quiet_range(gtts)
    fires_none = all(book.fired_leg(*gtt, ltp) is None for gtt in gtts)
    assert (low < ltp < high) == fires_none
