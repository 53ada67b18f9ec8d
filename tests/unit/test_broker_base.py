"""The broker interface's own rules: tags, requests refused before any call, tick rounding."""

import pytest

from Webapp.broker.base import (
    GttRequest,
    GttType,
    InputRejected,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
    check_tag,
    new_tag,
    round_down_to_tick,
    round_up_to_tick,
)


@pytest.mark.parametrize("tag", ["", "a" * 21, "has space", "dash-ed", "ünï"])
def test_a_tag_kite_would_refuse_is_refused_before_any_call(tag):
    with pytest.raises(InputRejected, match="order tag"):
        check_tag(tag)


def test_new_tags_fit_kite_and_do_not_repeat():
    tags = {new_tag("P1") for _ in range(1000)}
    assert len(tags) == 1000
    assert all(len(t) <= 20 and t.startswith("P1") and t.isalnum() for t in tags)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantity": 0, "order_type": OrderType.MARKET}, "quantity must be > 0"),
        ({"quantity": 1, "order_type": OrderType.LIMIT}, "needs a price"),
        ({"quantity": 1, "order_type": OrderType.MARKET, "price": 10.0}, "takes no price"),
    ],
)
def test_an_impossible_order_is_refused_when_built(kwargs, message):
    with pytest.raises(InputRejected, match=message):
        OrderRequest(symbol="INFY", side=Side.BUY, tag="T1", **kwargs)


def test_a_two_leg_gtt_needs_two_triggers():
    with pytest.raises(InputRejected, match="needs 2 trigger"):
        GttRequest("INFY", GttType.TWO_LEG, (975.0,), (970.1,), 1000.0, 3)


@pytest.mark.parametrize(
    ("price", "down", "up"),
    [
        (977.4375, 977.40, 977.45),
        (977.40, 977.40, 977.40),
        (1050.01, 1050.0, 1050.05),
        (0.07, 0.05, 0.1),
    ],
)
def test_prices_round_to_the_tick_in_the_safe_direction(price, down, up):
    assert round_down_to_tick(price) == down
    assert round_up_to_tick(price) == up


def test_final_states_are_filled_cancelled_rejected():
    assert {s for s in OrderState if s.is_final} == {
        OrderState.FILLED,
        OrderState.CANCELLED,
        OrderState.REJECTED,
    }
