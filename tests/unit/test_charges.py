"""Zerodha charges: worked examples computed by hand, rounding rules, refusals, properties."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from Webapp.broker.base import Side
from Webapp.broker.charges import (
    PRODUCT_MIS,
    Charges,
    net_pnl,
    order_charges,
    round_trip_charges,
)
from Webapp.config.params import ChargesParams, load_params

SHIPPED = Path(__file__).resolve().parents[2] / "support_files" / "param.yaml"
RATES = load_params(SHIPPED).charges


def parts(c: Charges) -> tuple[float, ...]:
    return (c.brokerage, c.stt, c.transaction, c.sebi, c.stamp_duty, c.gst, c.dp)


def test_the_examples_use_the_shipped_rates():
    # The hand computations below assume these; if the file changes, so must they.
    assert (RATES.brokerage, RATES.stt_pct, RATES.nse_txn_pct) == (0, 0.1, 0.00297)
    assert (RATES.sebi_per_crore, RATES.stamp_duty_pct, RATES.gst_pct) == (10, 0.015, 18)
    assert RATES.dp_charge == 13.50
    i = RATES.intraday
    assert (i.brokerage_pct, i.brokerage_max, i.stt_sell_pct, i.stamp_duty_pct) == (
        0.03,
        20,
        0.025,
        0.003,
    )


# --- delivery (CNC): buy 10 INFY at 1,500.00, sell at 1,575.00 -------------------------------
#
# Buy value 10 x 1,500.00 = 15,000.00
#   brokerage   0
#   STT         0.1% x 15,000        = 15.00        -> 15 (rupee)
#   transaction 0.00297% x 15,000    = 0.4455       -> 0.45
#   SEBI        15,000 x 10 / 1 crore = 0.015       -> 0.02 (half up)
#   stamp duty  0.015% x 15,000      = 2.25
#   GST         18% x (0 + 0.45 + 0.02) = 0.0846    -> 0.08
#   total       15 + 0.45 + 0.02 + 2.25 + 0.08      = 17.80
#
# Sell value 10 x 1,575.00 = 15,750.00
#   brokerage   0
#   STT         0.1% x 15,750        = 15.75        -> 16 (rupee)
#   transaction 0.00297% x 15,750    = 0.467775     -> 0.47
#   SEBI        15,750 x 10 / 1 crore = 0.01575     -> 0.02
#   stamp duty  0 (buys only)
#   DP          13.50 (first sell of INFY today)
#   GST         18% x (0 + 0.47 + 0.02 + 13.50) = 18% x 13.99 = 2.5182 -> 2.52
#   total       16 + 0.47 + 0.02 + 13.50 + 2.52     = 32.51
#
# Round trip: 17.80 + 32.51 = 50.31; gross 10 x 75.00 = 750.00; net 750.00 - 50.31 = 699.69


def test_a_delivery_buy_pays_stt_transaction_sebi_stamp_and_gst():
    c = order_charges(Side.BUY, 10, 1500.00, RATES)
    assert c == Charges(
        brokerage=0, stt=15, transaction=0.45, sebi=0.02, stamp_duty=2.25, gst=0.08, dp=0
    )
    assert c.total == 17.80


def test_a_delivery_sell_pays_stt_and_the_dp_charge_with_gst_and_no_stamp_duty():
    c = order_charges(Side.SELL, 10, 1575.00, RATES)
    assert c == Charges(
        brokerage=0, stt=16, transaction=0.47, sebi=0.02, stamp_duty=0, gst=2.52, dp=13.50
    )
    assert c.total == 32.51


def test_a_delivery_round_trip_is_its_buy_plus_its_sell():
    c = round_trip_charges(10, 1500.00, 1575.00, RATES)
    assert c == Charges(
        brokerage=0, stt=31, transaction=0.92, sebi=0.04, stamp_duty=2.25, gst=2.60, dp=13.50
    )
    assert c.total == 50.31


def test_net_pnl_of_a_delivery_round_trip():
    assert net_pnl(10, 1500.00, 1575.00, RATES) == (750.00, 699.69)


def test_a_second_sell_of_the_same_scrip_the_same_day_pays_no_dp_charge():
    # Sell 10 more INFY at 1,575.00 after the first sell:
    #   STT 16, transaction 0.47, SEBI 0.02, DP 0
    #   GST 18% x (0.47 + 0.02) = 0.0882 -> 0.09
    #   total 16 + 0.47 + 0.02 + 0.09 = 16.58
    c = order_charges(Side.SELL, 10, 1575.00, RATES, dp_applies=False)
    assert c == Charges(
        brokerage=0, stt=16, transaction=0.47, sebi=0.02, stamp_duty=0, gst=0.09, dp=0
    )
    assert c.total == 16.58
    assert order_charges(Side.SELL, 10, 1575.00, RATES, dp_applies=True).dp == 13.50


def test_a_delivery_buy_never_pays_the_dp_charge():
    assert order_charges(Side.BUY, 10, 1500.00, RATES, dp_applies=True).dp == 0


def test_a_flat_delivery_brokerage_from_the_file_is_charged_per_order_with_gst():
    rates = RATES.model_copy(update={"brokerage": 20.0})
    # Buy of the INFY example: GST 18% x (20 + 0.45 + 0.02) = 3.6846 -> 3.68
    c = order_charges(Side.BUY, 10, 1500.00, rates)
    assert (c.brokerage, c.gst, c.total) == (20, 3.68, 41.40)


# --- intraday (MIS) --------------------------------------------------------------------------
#
# The Rs 20 cap binds: buy 100 RELIANCE at 2,500.00, sell at 2,520.00
# Buy value 250,000.00
#   brokerage   min(0.03% x 250,000 = 75.00, 20)  = 20.00
#   STT         0 (sells only)
#   transaction 0.00297% x 250,000 = 7.425        -> 7.43
#   SEBI        250,000 x 10 / 1 crore = 0.25
#   stamp duty  0.003% x 250,000 = 7.50
#   GST         18% x (20 + 7.43 + 0.25) = 18% x 27.68 = 4.9824 -> 4.98
#   total       20 + 7.43 + 0.25 + 7.50 + 4.98 = 40.16
# Sell value 252,000.00
#   brokerage   min(75.60, 20)              = 20.00
#   STT         0.025% x 252,000 = 63.00    -> 63
#   transaction 0.00297% x 252,000 = 7.4844 -> 7.48
#   SEBI        0.252                       -> 0.25
#   stamp duty  0, DP 0 (intraday shares never reach the demat account)
#   GST         18% x (20 + 7.48 + 0.25) = 18% x 27.73 = 4.9914 -> 4.99
#   total       20 + 63 + 7.48 + 0.25 + 4.99 = 95.72
# Round trip 135.88; gross 100 x 20.00 = 2,000.00; net 1,864.12


def test_intraday_brokerage_is_capped_at_20_rupees_per_order():
    buy = order_charges(Side.BUY, 100, 2500.00, RATES, product=PRODUCT_MIS)
    assert buy == Charges(
        brokerage=20, stt=0, transaction=7.43, sebi=0.25, stamp_duty=7.50, gst=4.98, dp=0
    )
    assert buy.total == 40.16
    sell = order_charges(Side.SELL, 100, 2520.00, RATES, product=PRODUCT_MIS)
    assert sell == Charges(
        brokerage=20, stt=63, transaction=7.48, sebi=0.25, stamp_duty=0, gst=4.99, dp=0
    )
    assert sell.total == 95.72
    assert round_trip_charges(100, 2500.00, 2520.00, RATES, product=PRODUCT_MIS).total == 135.88
    assert net_pnl(100, 2500.00, 2520.00, RATES, product=PRODUCT_MIS) == (2000.00, 1864.12)


# 0.03% binds: buy 10 at 1,500.00, sell at 1,510.00
# Buy value 15,000.00
#   brokerage   0.03% x 15,000 = 4.50 (below 20)
#   transaction 0.45, SEBI 0.02 (as in the delivery example)
#   stamp duty  0.003% x 15,000 = 0.45
#   GST         18% x (4.50 + 0.45 + 0.02) = 18% x 4.97 = 0.8946 -> 0.89
#   total       4.50 + 0.45 + 0.02 + 0.45 + 0.89 = 6.31
# Sell value 15,100.00
#   brokerage   0.03% x 15,100 = 4.53
#   STT         0.025% x 15,100 = 3.775      -> 4
#   transaction 0.00297% x 15,100 = 0.44847  -> 0.45
#   SEBI        0.0151                       -> 0.02
#   GST         18% x (4.53 + 0.45 + 0.02) = 18% x 5.00 = 0.90
#   total       4.53 + 4 + 0.45 + 0.02 + 0.90 = 9.90
# Round trip 16.21; gross 100.00; net 83.79


def test_intraday_brokerage_is_0_03_pct_when_that_is_below_the_cap():
    buy = order_charges(Side.BUY, 10, 1500.00, RATES, product=PRODUCT_MIS)
    assert buy == Charges(
        brokerage=4.50, stt=0, transaction=0.45, sebi=0.02, stamp_duty=0.45, gst=0.89, dp=0
    )
    assert buy.total == 6.31
    sell = order_charges(Side.SELL, 10, 1510.00, RATES, product=PRODUCT_MIS)
    assert sell == Charges(
        brokerage=4.53, stt=4, transaction=0.45, sebi=0.02, stamp_duty=0, gst=0.90, dp=0
    )
    assert sell.total == 9.90
    assert net_pnl(10, 1500.00, 1510.00, RATES, product=PRODUCT_MIS) == (100.00, 83.79)


def test_an_intraday_sell_never_pays_the_dp_charge():
    sell = order_charges(Side.SELL, 10, 1510.00, RATES, product=PRODUCT_MIS, dp_applies=True)
    assert sell.dp == 0


def test_intraday_rates_come_from_the_file():
    intraday = RATES.intraday.model_copy(update={"brokerage_max": 5.0, "stt_sell_pct": 0.1})
    rates = RATES.model_copy(update={"intraday": intraday})
    # Sell 10 at 1,510.00: brokerage min(4.53, 5) = 4.53; STT 0.1% x 15,100 = 15.10 -> 15
    sell = order_charges(Side.SELL, 10, 1510.00, rates, product=PRODUCT_MIS)
    assert (sell.brokerage, sell.stt) == (4.53, 15)
    # Buy 100 at 2,500.00: brokerage min(75.00, 5) = 5
    assert order_charges(Side.BUY, 100, 2500.00, rates, product=PRODUCT_MIS).brokerage == 5


# --- rounding --------------------------------------------------------------------------------


def test_stt_rounds_half_up_to_the_rupee():
    # Buy 1 at 2,500.00 delivery: STT 0.1% x 2,500 = 2.50 -> 3 (half up, not to the even 2)
    assert order_charges(Side.BUY, 1, 2500.00, RATES).stt == 3
    # Sell 1 at 1,000.00 intraday: STT 0.025% x 1,000 = 0.25 -> 0
    assert order_charges(Side.SELL, 1, 1000.00, RATES, product=PRODUCT_MIS).stt == 0
    # Buy 2 at 1,499.55 delivery (3,000 of capital): 0.1% x 2,999.10 = 2.9991 -> 3
    assert order_charges(Side.BUY, 2, 1499.55, RATES).stt == 3


def test_paisa_components_round_half_up_on_the_price_as_written():
    # Buy 1 at 1,500.05 delivery: stamp duty 0.015% x 1,500.05 = 0.2250075 -> 0.23;
    # SEBI 1,500.05 x 10 / 1 crore = 0.00150005 -> 0.00
    c = order_charges(Side.BUY, 1, 1500.05, RATES)
    assert (c.stamp_duty, c.sebi) == (0.23, 0.0)
    # Buy 1,000 at 1,000.00 intraday: transaction 0.00297% x 1,000,000 = 29.70 exactly
    assert order_charges(Side.BUY, 1000, 1000.00, RATES, product=PRODUCT_MIS).transaction == 29.70


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "price", "product", "message"),
    [
        (0, 1500.0, "CNC", "quantity must be a whole number of shares > 0, got 0"),
        (-5, 1500.0, "CNC", "quantity must be a whole number of shares > 0, got -5"),
        (2.5, 1500.0, "CNC", "quantity must be a whole number of shares > 0, got 2.5"),
        (True, 1500.0, "CNC", "quantity must be a whole number of shares > 0, got True"),
        (10, 0.0, "CNC", "price must be a number of rupees > 0, got 0.0"),
        (10, -1500.0, "CNC", "price must be a number of rupees > 0, got -1500.0"),
        (10, float("nan"), "CNC", "price must be a number of rupees > 0, got nan"),
        (10, "1500", "CNC", "price must be a number of rupees > 0, got '1500'"),
        (10, 1500.0, "NRML", "product must be one of CNC, MIS, got 'NRML'"),
    ],
)
def test_a_bad_order_is_refused_with_a_clear_error(quantity, price, product, message):
    with pytest.raises(ValueError) as caught:
        order_charges(Side.BUY, quantity, price, RATES, product=product)
    assert str(caught.value) == message


def test_a_round_trip_with_a_bad_sell_price_is_refused():
    with pytest.raises(ValueError, match="price must be a number of rupees > 0, got -1.0"):
        net_pnl(10, 1500.0, -1.0, RATES)
    with pytest.raises(ValueError, match="got 0"):
        round_trip_charges(0, 1500.0, 1575.0, RATES)


# --- the Charges value -----------------------------------------------------------------------


def test_zero_is_the_identity_of_adding_charges():
    c = order_charges(Side.SELL, 10, 1575.00, RATES)
    assert Charges.ZERO + c == c
    assert Charges.zero() is Charges.ZERO
    assert Charges.ZERO.total == 0


def test_adding_charges_keeps_each_part_in_paise():
    # 0.1 + 0.2 is 0.30000000000000004 as floats; a sum of charges must read 0.30
    a = Charges(0.1, 0, 0.1, 0, 0, 0, 0)
    b = Charges(0.2, 0, 0.2, 0, 0, 0, 0)
    assert (a + b).brokerage == 0.30
    assert (a + b).total == 0.60


def test_charges_are_immutable():
    with pytest.raises(AttributeError):
        Charges.ZERO.stt = 1.0  # type: ignore[misc]


# --- properties ------------------------------------------------------------------------------

quantities = st.integers(min_value=1, max_value=100_000)
prices = st.integers(min_value=1, max_value=2_000_000).map(lambda ticks: ticks * 0.05)
products = st.sampled_from(["CNC", PRODUCT_MIS])


@given(
    side=st.sampled_from(Side),
    quantity=quantities,
    price=prices,
    product=products,
    dp=st.sampled_from([None, True, False]),
)
def test_every_charge_is_non_negative_and_the_total_is_the_sum_of_parts(
    side, quantity, price, product, dp
):
    c = order_charges(side, quantity, price, RATES, product=product, dp_applies=dp)
    assert all(part >= 0 for part in parts(c))
    assert c.total == round(sum(parts(c)), 2)
    assert all(round(part, 2) == part for part in parts(c))
    assert c.stt == int(c.stt)
    if product == PRODUCT_MIS:
        assert c.brokerage <= RATES.intraday.brokerage_max
        assert c.dp == 0


@given(quantity=quantities, buy=prices, sell=prices, product=products)
def test_net_pnl_is_gross_less_the_round_trip_charges(quantity, buy, sell, product):
    gross, net = net_pnl(quantity, buy, sell, RATES, product=product)
    charges = round_trip_charges(quantity, buy, sell, RATES, product=product)
    assert gross == round((sell - buy) * quantity, 2)
    assert net == round(gross - charges.total, 2)
    assert net < gross or charges.total == 0


def test_zero_rates_cost_nothing():
    zero = ChargesParams.model_validate(
        {
            "brokerage": 0.0,
            "stt_pct": 0.0,
            "nse_txn_pct": 0.0,
            "sebi_per_crore": 0.0,
            "stamp_duty_pct": 0.0,
            "gst_pct": 0.0,
            "dp_charge": 0.0,
            "intraday": {
                "brokerage_pct": 0.0,
                "brokerage_max": 0.0,
                "stt_sell_pct": 0.0,
                "stamp_duty_pct": 0.0,
            },
        }
    )
    for product in ("CNC", PRODUCT_MIS):
        assert round_trip_charges(10, 1500.0, 1575.0, zero, product=product) == Charges.ZERO
