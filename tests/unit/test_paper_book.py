"""The paper fill rules as pure functions: fill prices on the tick, which GTT leg a price fires."""

import pytest

from Webapp.broker.base import GttType, OrderType, Side
from Webapp.broker.paper_book import (
    STOP_LEG,
    TARGET_LEG,
    against_trader,
    fill_price,
    fired_leg,
    limit_fill_price,
    market_fill_price,
)

BUY, SELL = Side.BUY, Side.SELL


@pytest.mark.parametrize(
    ("side", "ltp", "bps", "expected"),
    [
        (BUY, 1000.0, 5, 1000.50),  # 1000 × 1.0005, already on the tick
        (SELL, 1000.0, 5, 999.50),
        (BUY, 1001.0, 5, 1001.55),  # 1001.5005 rounds up: a buy never fills better than the model
        (SELL, 1001.0, 5, 1000.45),  # 1000.4995 rounds down
        (BUY, 250.0, 0, 250.0),
        (SELL, 250.0, 0, 250.0),
        (BUY, 100.0, 10, 100.10),
    ],
)
def test_market_fill_is_ltp_plus_or_minus_slippage_rounded_against_the_trader(
    side, ltp, bps, expected
):
    assert market_fill_price(side, ltp, bps) == expected


@pytest.mark.parametrize(
    ("side", "limit", "ltp", "expected"),
    [
        (SELL, 1005.0, 1004.95, None),  # below the limit: rests
        (SELL, 1005.0, 1005.0, 1005.0),  # at it: max(limit, 1004.4975 → 1004.45)
        (SELL, 1005.0, 1010.0, 1009.45),  # gapped above: LTP less slippage beats the limit
        (BUY, 995.0, 995.05, None),
        (BUY, 995.0, 995.0, 995.0),  # min(limit, 995.4975 → 995.50)
        (BUY, 995.0, 990.0, 990.50),
    ],
)
def test_limit_fill_never_worse_than_the_limit(side, limit, ltp, expected):
    assert limit_fill_price(side, limit, ltp, 5) == expected


def test_fill_price_dispatches_on_the_order_type():
    assert fill_price(SELL, OrderType.MARKET, None, 1000.0, 5) == 999.50
    assert fill_price(SELL, OrderType.LIMIT, 1001.0, 1000.0, 5) is None


def test_against_trader_keeps_a_price_already_on_the_tick():
    assert against_trader(BUY, 970.10) == 970.10
    assert against_trader(SELL, 970.10) == 970.10


@pytest.mark.parametrize(
    ("gtt_type", "triggers", "last", "ltp", "expected"),
    [
        (GttType.SINGLE, (975.0,), 1000.0, 975.05, None),
        (GttType.SINGLE, (975.0,), 1000.0, 975.0, STOP_LEG),  # at the trigger
        (GttType.SINGLE, (975.0,), 1000.0, 900.0, STOP_LEG),  # gapped through it
        (GttType.SINGLE, (1030.0,), 1000.0, 1029.95, None),  # placed above: fires going up
        (GttType.SINGLE, (1030.0,), 1000.0, 1030.0, STOP_LEG),
        (GttType.TWO_LEG, (975.0, 1050.0), 1000.0, 1049.95, None),
        (GttType.TWO_LEG, (975.0, 1050.0), 1000.0, 975.0, STOP_LEG),
        (GttType.TWO_LEG, (975.0, 1050.0), 1000.0, 1050.0, TARGET_LEG),
        (GttType.TWO_LEG, (975.0, 1050.0), 1000.0, 1100.0, TARGET_LEG),
    ],
)
def test_which_leg_a_price_fires(gtt_type, triggers, last, ltp, expected):
    assert fired_leg(gtt_type, triggers, last, ltp) == expected
