"""kitesim's GTT book through the unmodified KiteConnect: Kite's rules, firing on ticker prices."""

from __future__ import annotations

import re

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_errors

INFY, INFY_TOKEN = "INFY", 23267585


def sell_at(price: float, quantity: int = 10) -> dict:
    return {
        "transaction_type": "SELL",
        "quantity": quantity,
        "order_type": "LIMIT",
        "product": "CNC",
        "price": price,
    }


def place_stop(
    kite: KiteConnect,
    trigger: float = 1450.0,
    limit: float = 1442.75,
    last_price: float = 1500.0,
    quantity: int = 10,
) -> int:
    placed = kite.place_gtt(
        "single", INFY, "NSE", [trigger], last_price, [sell_at(limit, quantity)]
    )
    return placed["trigger_id"]


def place_oco(
    kite: KiteConnect, stop: float = 1450.0, target: float = 1575.0, last_price: float = 1500.0
) -> int:
    placed = kite.place_gtt(
        "two-leg", INFY, "NSE", [stop, target], last_price, [sell_at(1442.75), sell_at(target)]
    )
    return placed["trigger_id"]


@pytest.fixture
def sim(kite_exchange):
    kite_exchange.rest.add_holding(INFY, 10, 1400.0)
    return kite_exchange.rest


@pytest.fixture
def ticker(kite_exchange):
    return kite_exchange.ticker


@pytest.fixture
def kite(kite_exchange) -> KiteConnect:
    return kite_exchange.client()


def test_a_gtt_is_placed_read_modified_and_deleted_with_kites_fields(sim, kite):
    gtt_id = place_oco(kite)

    gtt = kite.get_gtt(gtt_id)
    assert gtt["status"] == "active" and gtt["type"] == "two-leg"
    assert gtt["condition"] == {
        "exchange": "NSE",
        "tradingsymbol": INFY,
        "instrument_token": INFY_TOKEN,
        "trigger_values": [1450.0, 1575.0],
        "last_price": 1500.0,
    }
    assert [o["result"] for o in gtt["orders"]] == [None, None]
    assert len(gtt["created_at"]) == 19 and gtt["user_id"] == "KS0001"

    kite.modify_gtt(
        gtt_id,
        "two-leg",
        INFY,
        "NSE",
        [1470.0, 1575.0],
        1520.0,
        [sell_at(1462.65), sell_at(1575.0)],
    )
    assert kite.get_gtt(gtt_id)["condition"]["trigger_values"] == [1470.0, 1575.0]
    assert [g["id"] for g in kite.get_gtts()] == [gtt_id]

    assert kite.delete_gtt(gtt_id) == {"trigger_id": gtt_id}
    assert kite.get_gtt(gtt_id)["status"] == "deleted"
    assert kite.get_gtts() == []


def test_a_gtt_that_is_no_longer_active_cannot_be_deleted_or_modified(sim, kite):
    gtt_id = place_stop(kite)
    kite.delete_gtt(gtt_id)

    with pytest.raises(kite_errors.InputException, match="Trigger is not active") as refused:
        kite.delete_gtt(gtt_id)
    assert refused.value.code == 400
    with pytest.raises(kite_errors.InputException, match="Trigger is not active"):
        kite.modify_gtt(gtt_id, "single", INFY, "NSE", [1460.0], 1500.0, [sell_at(1452.7)])


def test_a_trigger_within_a_quarter_percent_of_the_last_price_is_refused(sim, kite):
    with pytest.raises(kite_errors.InputException, match="too close to the last price"):
        place_stop(kite, trigger=1496.25, limit=1490.0)  # 0.25% below 1500
    assert place_stop(kite, trigger=1496.2, limit=1490.0)  # just over 0.25%


@pytest.mark.parametrize("last_price", [1440.0, 1450.0, 1575.0, 1600.0])
def test_a_two_leg_gtts_last_price_must_lie_strictly_between_its_triggers(sim, kite, last_price):
    with pytest.raises(kite_errors.InputException, match="between the two trigger values"):
        place_oco(kite, last_price=last_price)


def test_the_last_price_is_required(sim, kite):
    with pytest.raises(kite_errors.InputException, match="last_price"):
        kite.place_gtt("single", INFY, "NSE", [1450.0], None, [sell_at(1442.75)])


def test_gtt_prices_must_sit_on_the_tick(sim, kite):
    with pytest.raises(kite_errors.InputException, match="Tick size"):
        place_stop(kite, trigger=1450.03)
    with pytest.raises(kite_errors.InputException, match="Tick size"):
        place_stop(kite, limit=1442.71)


def test_at_most_250_gtts_are_active(sim, kite):
    for _ in range(250):
        place_stop(kite)

    with pytest.raises(kite_errors.InputException, match="250 active GTTs") as refused:
        place_stop(kite)
    assert refused.value.code == 400

    kite.delete_gtt(kite.get_gtts()[0]["id"])
    assert place_stop(kite)


def test_a_stop_gtt_fires_exactly_once_on_a_ticker_price_and_its_limit_sell_fills(
    sim, ticker, kite
):
    gtt_id = place_stop(kite, trigger=1450.0, limit=1442.75)
    ticker.set_price(INFY_TOKEN, 1460.0)
    assert kite.get_gtt(gtt_id)["status"] == "active"

    ticker.set_price(INFY_TOKEN, 1449.0)
    ticker.set_price(INFY_TOKEN, 1445.0)
    ticker.set_price(INFY_TOKEN, 1430.0)

    gtt = kite.get_gtt(gtt_id)
    assert gtt["status"] == "triggered"
    result = gtt["orders"][0]["result"]
    assert result["triggered_at"] == 1449.0 and result["order_result"]["status"] == "success"
    [placed] = sim.orders_placed()
    assert placed["order_id"] == result["order_result"]["order_id"]
    assert placed["tag"] is None and placed["order_type"] == "LIMIT"
    assert placed["status"] == "COMPLETE" and placed["average_price"] == 1442.75
    assert kite.holdings()[0]["used_quantity"] == 10


def test_a_two_leg_gtt_fires_its_target_leg_when_the_price_rises_through_it(sim, ticker, kite):
    gtt_id = place_oco(kite, stop=1450.0, target=1575.0)

    ticker.set_price(INFY_TOKEN, 1575.0)

    gtt = kite.get_gtt(gtt_id)
    assert gtt["orders"][0]["result"] is None
    order_id = gtt["orders"][1]["result"]["order_result"]["order_id"]
    [placed] = kite.order_history(order_id)[-1:]
    assert placed["status"] == "COMPLETE" and placed["average_price"] == 1575.0


def test_a_gtt_sell_that_gaps_below_its_limit_rests_until_the_price_comes_back(sim, ticker, kite):
    gtt_id = place_stop(kite, trigger=1450.0, limit=1442.75)

    ticker.set_price(INFY_TOKEN, 1400.0)

    order_id = kite.get_gtt(gtt_id)["orders"][0]["result"]["order_result"]["order_id"]
    assert kite.order_history(order_id)[-1]["status"] == "OPEN"
    ticker.set_price(INFY_TOKEN, 1443.0)
    assert kite.order_history(order_id)[-1]["status"] == "COMPLETE"


def test_a_triggered_gtt_cannot_be_deleted_so_the_leg_is_not_sold_twice(sim, ticker, kite):
    gtt_id = place_stop(kite)
    ticker.set_price(INFY_TOKEN, 1440.0)

    with pytest.raises(kite_errors.InputException, match="Trigger is not active"):
        kite.delete_gtt(gtt_id)

    assert kite.get_gtt(gtt_id)["status"] == "triggered"


def test_the_order_a_gtt_places_can_be_rejected_by_a_fault(sim, ticker, kite):
    sim.fail_next("gtt.trigger", "reject", message="RMS: circuit limit")
    gtt_id = place_stop(kite)

    ticker.set_price(INFY_TOKEN, 1440.0)

    outcome = kite.get_gtt(gtt_id)["orders"][0]["result"]["order_result"]
    assert outcome["status"] == "failed" and outcome["rejection_reason"] == "RMS: circuit limit"
    assert kite.order_history(outcome["order_id"])[-1]["status"] == "REJECTED"


CIRCUIT = (
    "Your order price is lower than the current lower circuit limit of 1445.50. "
    "Place an order within the daily range."
)


def fired_result(kite: KiteConnect, gtt_id: int, order_result: dict) -> dict:
    """Kite's `orders[0].result` of a fired stop GTT (place_stop's terms, fired at 1440)."""
    gtt = kite.get_gtt(gtt_id)
    assert gtt["status"] == "triggered"
    result = gtt["orders"][0]["result"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", result["timestamp"])
    assert result == {
        "account_id": "KS0001",
        "exchange": "NSE",
        "tradingsymbol": INFY,
        "validity": "DAY",
        "product": "CNC",
        "order_type": "LIMIT",
        "transaction_type": "SELL",
        "quantity": 10,
        "price": 1442.75,
        "meta": "",
        "timestamp": result["timestamp"],
        "triggered_at": 1440.0,
        "order_result": order_result,
    }
    return result


def test_a_fired_gtt_records_its_order_in_kites_shape(sim, ticker, kite):
    gtt_id = place_stop(kite)

    ticker.set_price(INFY_TOKEN, 1440.0)

    [placed] = sim.orders_placed()
    expected = {"status": "success", "order_id": placed["order_id"], "rejection_reason": ""}
    fired_result(kite, gtt_id, expected)


def test_a_fired_gtt_whose_order_fails_is_triggered_with_the_reason_and_no_order(sim, ticker, kite):
    sim.fail_next("gtt.trigger", "failed", message=CIRCUIT)
    gtt_id = place_stop(kite)

    ticker.set_price(INFY_TOKEN, 1440.0)

    expected = {"status": "failed", "order_id": "", "rejection_reason": CIRCUIT}
    fired_result(kite, gtt_id, expected)
    assert sim.orders_placed() == [] and kite.orders() == []
    assert kite.holdings()[0]["used_quantity"] == 0
    ticker.set_price(INFY_TOKEN, 1430.0)  # it fired once: nothing more happens
    assert sim.orders_placed() == []


def test_the_failed_fault_applies_to_a_firing_gtt_only(sim):
    with pytest.raises(ValueError, match="gtt.trigger"):
        sim.fail_next("order.place", "failed")


@pytest.mark.parametrize("route", ["gtt.place", "gtt.modify", "gtt.delete", "gtt.info"])
def test_gtt_routes_take_faults(sim, kite, route):
    gtt_id = place_stop(kite)
    sim.fail_next(route, "503")
    calls = {
        "gtt.place": lambda: place_stop(kite),
        "gtt.modify": lambda: kite.modify_gtt(
            gtt_id, "single", INFY, "NSE", [1460.0], 1500.0, [sell_at(1452.7)]
        ),
        "gtt.delete": lambda: kite.delete_gtt(gtt_id),
        "gtt.info": lambda: kite.get_gtt(gtt_id),
    }

    with pytest.raises(kite_errors.NetworkException) as failed:
        calls[route]()

    assert failed.value.code == 503 and kite.get_gtt(gtt_id)["status"] == "active"
