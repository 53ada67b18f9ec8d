"""Kite's order and GTT rules, checked before sending: a clear InputRejected, no request made."""

from __future__ import annotations

import pytest

from Webapp.broker.base import (
    GttRequest,
    GttType,
    InputRejected,
    OrderRequest,
    OrderType,
    Side,
)
from Webapp.broker.kite_gtt_rules import check_gtt, check_modify, check_order


def gtt(triggers, limits=None, last_price=1000.0, gtt_type=None, quantity=3, **kw):
    gtt_type = gtt_type or (GttType.TWO_LEG if len(triggers) == 2 else GttType.SINGLE)
    limits = limits or tuple(round(t * 0.995 * 20) / 20 for t in triggers)
    return GttRequest("INFY", gtt_type, tuple(triggers), tuple(limits), last_price, quantity, **kw)


@pytest.mark.parametrize(
    "request_",
    [
        gtt([975.0, 1050.0]),
        gtt([975.0]),
        gtt([997.45]),  # 0.255% below: just more than 0.25%
        gtt([1002.55]),  # 0.255% above
    ],
    ids=["two-leg", "single", "just-below", "just-above"],
)
def test_a_gtt_kite_would_accept_passes(request_):
    check_gtt(request_)


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (gtt([1005.0, 1050.0]), "strictly between"),  # last price below the stop
        (gtt([975.0, 995.0]), "strictly between"),  # above the target
        (gtt([1000.0, 1050.0]), "strictly between"),  # on the stop
        (gtt([997.5]), r"0\.250% from the last price"),  # exactly 0.25%: refused
        (gtt([999.0]), "Kite needs more than 0.25%"),
        (gtt([975.0, 1002.0]), "more than 0.25%"),  # the target too close
        (gtt([975.0], last_price=0.0), "last_price must be a price > 0"),
        (gtt([975.0], last_price=float("nan")), "last_price must be a price > 0"),
        (gtt([975.03]), "not on the 0.05 tick"),
        (gtt([975.0], limits=(970.01,)), "limit price 970.01 is not on the 0.05 tick"),
        (gtt([975.0], exchange="BSE"), "only NSE"),
        (gtt([975.0], product="MIS"), "only CNC"),
    ],
    ids=[
        "ltp-below-stop", "ltp-above-target", "ltp-on-stop", "exactly-0.25pct", "too-close",
        "target-too-close", "no-last-price", "nan-last-price", "trigger-off-tick",
        "limit-off-tick", "exchange", "product",
    ],
)  # fmt: skip
def test_a_gtt_kite_would_refuse_is_rejected_with_the_rule_in_words(request_, words):
    with pytest.raises(InputRejected, match=words) as caught:
        check_gtt(request_)
    assert "place_gtt INFY" in caught.value.message


def test_the_250_active_gtt_limit_is_honoured_on_placement_only():
    request = gtt([975.0, 1050.0])
    check_gtt(request, active_gtts=249)
    with pytest.raises(InputRejected, match="250 active GTTs|Kite allows 250"):
        check_gtt(request, active_gtts=250)
    check_gtt(request, operation="modify_gtt", active_gtts=250)


def test_quantity_must_be_a_whole_number():
    with pytest.raises(InputRejected, match="whole number"):
        check_gtt(gtt([975.0], quantity=2.5))


def order(**kw):
    values = dict(symbol="INFY", side=Side.BUY, quantity=3, order_type=OrderType.LIMIT,
                  tag="L1a2b3c", price=1000.0)  # fmt: skip
    values.update(kw)
    return OrderRequest(**values)


def test_an_order_kite_would_accept_passes():
    check_order(order())
    check_order(order(order_type=OrderType.MARKET, price=None))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"price": 1000.01}, "not on the 0.05 tick"),
        ({"exchange": "BSE"}, "only NSE"),
        ({"product": "MIS"}, "only CNC"),
    ],
)
def test_an_order_kite_would_refuse_is_rejected(changes, words):
    with pytest.raises(InputRejected, match=words):
        check_order(order(**changes))


def test_a_bad_tag_never_reaches_kite():
    with pytest.raises(InputRejected, match="order tag"):
        order(tag="has-dash")
    with pytest.raises(InputRejected, match="order tag"):
        order(tag="x" * 21)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "nothing to change"),
        ({"quantity": 0}, "quantity"),
        ({"price": 10.0, "order_type": OrderType.MARKET}, "takes no price"),
        ({"price": 10.02}, "tick"),
    ],
)
def test_a_meaningless_modification_is_rejected(kwargs, words):
    kwargs = {"quantity": None, "price": None, "order_type": None, **kwargs}
    with pytest.raises(InputRejected, match=words):
        check_modify("2501", **kwargs)
