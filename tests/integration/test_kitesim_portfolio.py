"""kitesim's holdings, positions and margins in Kite's shapes, through the unmodified KiteConnect.

Kite shows a sale out of holdings twice: the holding keeps its `quantity` and counts the
shares in `used_quantity`, and the day's positions show a negative CNC position. A
delivery sell is matched against the same day's buys first (an intraday trade); only
the rest comes out of the holding.
"""

from __future__ import annotations

import pytest
from kiteconnect import KiteConnect

INFY = "INFY"
HOLDING_KEYS = {
    "tradingsymbol", "exchange", "instrument_token", "isin", "product", "price", "quantity",
    "used_quantity", "t1_quantity", "realised_quantity", "authorised_quantity",
    "authorised_date", "authorisation", "opening_quantity", "short_quantity",
    "collateral_quantity", "collateral_type", "discrepancy", "average_price", "last_price",
    "close_price", "pnl", "day_change", "day_change_percentage", "mtf",
}  # fmt: skip
MTF_KEYS = {"quantity", "used_quantity", "average_price", "value", "initial_margin"}
MARGIN_AVAILABLE = {
    "adhoc_margin", "cash", "opening_balance", "live_balance", "collateral", "intraday_payin",
}  # fmt: skip
MARGIN_UTILISED = {
    "debits", "exposure", "m2m_realised", "m2m_unrealised", "option_premium", "payout", "span",
    "holding_sales", "turnover", "liquid_collateral", "stock_collateral", "delivery",
}  # fmt: skip


@pytest.fixture
def sim(kite_exchange):
    sim = kite_exchange.rest
    sim.set_price(INFY, 1500.0)
    sim.set_price("BSE:INFY", 1500.0)
    return sim


@pytest.fixture
def kite(kite_exchange) -> KiteConnect:
    return kite_exchange.client()


def trade(kite, side: str, quantity: int, product: str = "CNC", exchange: str = "NSE") -> dict:
    order_id = kite.place_order("regular", exchange, INFY, side, quantity, product, "MARKET")
    return kite.order_history(order_id)[-1]


def holding(kite) -> dict:
    [row] = kite.holdings()
    return row


def positions(kite) -> dict[str, list[tuple[str, str, int]]]:
    """(exchange, product, quantity) of each row of `net` and of `day`."""
    return {
        bucket: sorted((p["exchange"], p["product"], p["quantity"]) for p in rows)
        for bucket, rows in kite.positions().items()
    }


def test_a_holding_carries_every_field_kite_documents(sim, kite):
    sim.add_holding(INFY, 10, 1400.0)

    row = holding(kite)

    assert set(row) == HOLDING_KEYS and set(row["mtf"]) == MTF_KEYS
    assert (row["tradingsymbol"], row["exchange"], row["product"]) == (INFY, "NSE", "CNC")
    assert (row["quantity"], row["used_quantity"], row["t1_quantity"]) == (10, 0, 0)
    assert (row["opening_quantity"], row["realised_quantity"], row["short_quantity"]) == (10, 10, 0)
    assert row["authorisation"] == {} and row["mtf"]["quantity"] == 0
    assert row["pnl"] == pytest.approx(10 * (1500.0 - 1400.0))


def test_a_sale_from_holdings_shows_in_used_quantity_and_as_a_negative_cnc_position(sim, kite):
    sim.add_holding(INFY, 10, 1400.0)

    assert trade(kite, "SELL", 4)["status"] == "COMPLETE"

    row = holding(kite)
    assert (row["quantity"], row["used_quantity"]) == (10, 4)
    assert positions(kite) == {"net": [("NSE", "CNC", -4)], "day": [("NSE", "CNC", -4)]}
    too_many = trade(kite, "SELL", 7)
    assert too_many["status"] == "REJECTED"
    assert too_many["status_message"].startswith("Insufficient holdings: 6 INFY")


def test_a_sell_is_matched_against_the_days_buys_before_the_holding(sim, kite):
    sim.add_holding(INFY, 10, 1400.0)
    trade(kite, "BUY", 3)

    trade(kite, "SELL", 5)

    assert holding(kite)["used_quantity"] == 2
    assert positions(kite)["net"] == [("NSE", "CNC", -2)]
    sim.new_day()
    assert (holding(kite)["quantity"], holding(kite)["used_quantity"]) == (8, 0)


def test_shares_sold_from_holdings_and_bought_back_the_same_day_stay_held(sim, kite):
    sim.add_holding(INFY, 10, 1400.0)
    trade(kite, "SELL", 4)

    trade(kite, "BUY", 4)

    assert holding(kite)["used_quantity"] == 0
    assert positions(kite)["net"] == [("NSE", "CNC", 0)]  # closed today, still listed
    sim.new_day()
    assert holding(kite)["quantity"] == 10


def test_positions_keep_their_product_and_exchange_and_only_delivery_becomes_holdings(sim, kite):
    trade(kite, "BUY", 2, product="MIS")
    trade(kite, "BUY", 3, exchange="BSE")
    trade(kite, "BUY", 5)

    expected = [("BSE", "CNC", 3), ("NSE", "CNC", 5), ("NSE", "MIS", 2)]
    assert positions(kite) == {"net": expected, "day": expected}
    assert kite.holdings() == []  # today's buys are positions until the day ends

    sim.new_day()

    row = holding(kite)  # the scrip's delivery shares from both exchanges, once
    assert (row["tradingsymbol"], row["quantity"], row["used_quantity"]) == (INFY, 8, 0)
    assert positions(kite) == {"net": [], "day": []}


def test_a_holding_reports_the_day_change_against_the_last_close(sim, kite):
    sim.add_holding(INFY, 10, 1400.0)
    sim.new_day()  # the day closes at 1500

    sim.set_price(INFY, 1530.0)

    row = holding(kite)
    assert (row["close_price"], row["last_price"]) == (1500.0, 1530.0)
    assert row["day_change"] == pytest.approx(30.0)
    assert row["day_change_percentage"] == pytest.approx(2.0)


def test_the_commodity_margins_have_every_key_of_the_equity_segment(sim, kite):
    both = kite.margins()
    equity, commodity = both["equity"], both["commodity"]

    assert set(commodity) == set(equity) == {"enabled", "net", "available", "utilised"}
    assert set(commodity["available"]) == set(equity["available"]) >= MARGIN_AVAILABLE
    assert set(commodity["utilised"]) == set(equity["utilised"]) >= MARGIN_UTILISED
    assert commodity["enabled"] is False and commodity["net"] == 0
    assert kite.margins("commodity") == commodity
