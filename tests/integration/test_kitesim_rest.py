"""kitesim's REST half through the unmodified KiteConnect: login, orders, fills, faults."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import simple_websocket
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_errors

from tests.kitesim.rest import KiteRestSim

INFY = "INFY"


def buy(kite: KiteConnect, quantity: int = 10, order_type: str = "MARKET", **kw) -> str:
    return kite.place_order("regular", "NSE", INFY, "BUY", quantity, "CNC", order_type, **kw)


def sell(kite: KiteConnect, quantity: int = 10, order_type: str = "LIMIT", **kw) -> str:
    return kite.place_order("regular", "NSE", INFY, "SELL", quantity, "CNC", order_type, **kw)


def order(kite: KiteConnect, order_id: str) -> dict:
    return kite.order_history(order_id)[-1]


@pytest.fixture
def sim(kite_exchange) -> KiteRestSim:
    return kite_exchange.rest


@pytest.fixture
def kite(kite_exchange) -> KiteConnect:
    return kite_exchange.client()


# --- login ---------------------------------------------------------------------------


def test_generate_session_with_a_good_checksum_logs_in_rest_and_ticker(kite_exchange):
    kite = KiteConnect(kite_exchange.api_key, root=kite_exchange.rest.url)
    session = kite.generate_session(
        kite_exchange.rest.issue_request_token(), kite_exchange.api_secret
    )

    assert isinstance(session["login_time"], datetime)  # kiteconnect parsed the 19 characters
    assert session["user_id"] == "KS0001" and session["refresh_token"] == ""
    assert session["api_key"] == kite_exchange.api_key
    assert kite.access_token == session["access_token"] == kite_exchange.access_token
    assert kite.profile()["user_id"] == "KS0001"
    ws = simple_websocket.Client.connect(
        f"{kite_exchange.ticker.url}/?api_key={kite_exchange.api_key}"
        f"&access_token={session['access_token']}"
    )
    ws.close()


def test_a_bad_checksum_is_refused_and_leaves_the_request_token_usable(sim):
    token = sim.issue_request_token()
    kite = KiteConnect(sim.api_key, root=sim.url)

    with pytest.raises(kite_errors.TokenException) as refused:
        kite.generate_session(token, "not-the-secret")
    assert refused.value.code == 403

    assert kite.generate_session(token, sim.api_secret)["access_token"]


def test_a_request_token_works_once(sim):
    token = sim.issue_request_token()
    KiteConnect(sim.api_key, root=sim.url).generate_session(token, sim.api_secret)

    with pytest.raises(kite_errors.TokenException, match="invalid or has expired"):
        KiteConnect(sim.api_key, root=sim.url).generate_session(token, sim.api_secret)


def test_the_login_page_redirects_with_a_request_token_and_the_apps_redirect_params(sim):
    sim.redirect_url = "http://app.invalid/kite/callback"

    page = requests.get(
        sim.login_url(redirect_params="state=s3cr3t&next=%2Fdash"), allow_redirects=False, timeout=5
    )

    assert page.status_code == 302
    location = urlsplit(page.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == sim.redirect_url
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["action"] == "login" and query["type"] == "login"
    assert query["status"] == "success"
    assert query["state"] == "s3cr3t" and query["next"] == "/dash"
    kite = KiteConnect(sim.api_key, root=sim.url)
    assert kite.generate_session(query["request_token"], sim.api_secret)["access_token"]


def test_an_expired_token_gets_403_until_renewed(kite_exchange, kite):
    hook_calls = []
    kite.set_session_expiry_hook(lambda: hook_calls.append(True))
    kite_exchange.rest.expire_token()

    with pytest.raises(kite_errors.TokenException) as expired:
        kite.orders()
    assert expired.value.code == 403 and hook_calls == [True]

    kite_exchange.rest.renew_token("next-day-token")
    assert kite_exchange.client().orders() == []


def test_invalidating_the_access_token_ends_the_session(kite):
    kite.invalidate_access_token()

    with pytest.raises(kite_errors.TokenException):
        kite.profile()


# --- orders ----------------------------------------------------------------------------


def test_a_market_order_rests_open_until_the_first_price_then_fills_at_it(sim, kite):
    order_id = buy(kite, 10, tag="L1a")
    assert order(kite, order_id)["status"] == "OPEN"

    sim.set_price(INFY, 1523.45)

    filled = order(kite, order_id)
    assert filled["status"] == "COMPLETE" and filled["filled_quantity"] == 10
    assert filled["average_price"] == 1523.45 and filled["pending_quantity"] == 0
    assert isinstance(filled["order_timestamp"], datetime)
    statuses = [h["status"] for h in kite.order_history(order_id)]
    assert statuses[:2] == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING"]
    assert statuses[-2:] == ["OPEN", "COMPLETE"]
    [trade] = kite.order_trades(order_id)
    assert trade["quantity"] == 10 and trade["average_price"] == 1523.45
    [position] = kite.positions()["net"]
    assert (position["tradingsymbol"], position["quantity"]) == (INFY, 10)
    assert kite.margins("equity")["net"] == pytest.approx(1_000_000 - 15_234.5)


def test_a_market_order_fills_at_once_when_a_price_is_known(kite_exchange, kite):
    kite_exchange.ticker.set_price(23267585, 1500.0)

    order_id = buy(kite, 5)

    assert order(kite, order_id)["status"] == "COMPLETE"
    assert kite.ltp("NSE:INFY")["NSE:INFY"]["last_price"] == 1500.0


def test_a_buy_limit_rests_above_its_price_and_fills_at_the_limit(sim, kite):
    sim.set_price(INFY, 1510.0)
    order_id = buy(kite, 4, "LIMIT", price=1500.0)
    sim.set_price(INFY, 1500.05)
    assert order(kite, order_id)["status"] == "OPEN"

    sim.set_price(INFY, 1498.0)

    filled = order(kite, order_id)
    assert filled["status"] == "COMPLETE" and filled["average_price"] == 1500.0


def test_a_sell_limit_fills_at_its_limit_once_the_price_reaches_it(sim, kite):
    sim.add_holding(INFY, 10, 1400.0)
    sim.set_price(INFY, 1500.0)
    order_id = sell(kite, 10, price=1510.0)
    assert order(kite, order_id)["status"] == "OPEN"

    sim.set_price(INFY, 1512.0)

    assert order(kite, order_id)["average_price"] == 1510.0
    assert kite.holdings()[0]["used_quantity"] == 10


def test_a_partial_fill_rests_open_with_the_rest_until_modified_to_market(sim, kite):
    sim.fail_next("order.place", "partial", filled=3)
    order_id = buy(kite, 10, "LIMIT", price=1500.0)

    sim.set_price(INFY, 1499.0)
    sim.set_price(INFY, 1498.0)
    part = order(kite, order_id)
    assert (part["status"], part["filled_quantity"], part["pending_quantity"]) == ("OPEN", 3, 7)

    kite.modify_order("regular", order_id, order_type="MARKET")

    done = order(kite, order_id)
    assert done["status"] == "COMPLETE" and done["filled_quantity"] == 10
    assert done["average_price"] == pytest.approx((3 * 1500.0 + 7 * 1498.0) / 10)


def test_a_rejection_returns_the_order_id_and_the_order_goes_rejected(sim, kite):
    sim.fail_next("order.place", "reject", message="RMS: blocked for the test")

    order_id = buy(kite, 10, tag="L2rej")

    rejected = order(kite, order_id)
    assert rejected["status"] == "REJECTED"
    assert rejected["status_message"] == "RMS: blocked for the test"
    sim.set_price(INFY, 1500.0)
    assert kite.positions()["net"] == []


def test_an_order_exception_refuses_the_order_without_creating_one(sim, kite):
    sim.fail_next("order.place", "order_exception")

    with pytest.raises(kite_errors.OrderException) as refused:
        buy(kite, 10, tag="L3x")

    assert refused.value.code == 400 and sim.orders_placed() == []


def test_insufficient_funds_and_holdings_are_rejected_like_kites_rms(sim, kite):
    sim.set_price(INFY, 1500.0)

    too_big = buy(kite, 1000)
    unheld = sell(kite, 5, price=1500.0)

    assert order(kite, too_big)["status_message"].startswith("Insufficient funds")
    assert order(kite, unheld)["status_message"].startswith("Insufficient holdings")


def test_cancelling_an_open_order_cancels_its_rest_and_a_second_cancel_is_refused(sim, kite):
    order_id = buy(kite, 10, "LIMIT", price=1400.0)

    assert kite.cancel_order("regular", order_id) == order_id

    cancelled = order(kite, order_id)
    assert cancelled["status"] == "CANCELLED" and cancelled["cancelled_quantity"] == 10
    with pytest.raises(kite_errors.InputException, match="already cancelled"):
        kite.cancel_order("regular", order_id)


def test_a_limit_order_modified_to_market_fills_at_the_last_price(sim, kite):
    sim.set_price(INFY, 1500.0)
    order_id = buy(kite, 2, "LIMIT", price=1450.0)

    kite.modify_order("regular", order_id, order_type="MARKET", market_protection=-1)

    done = order(kite, order_id)
    assert done["status"] == "COMPLETE" and done["average_price"] == 1500.0
    assert done["modified"] is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"quantity": 0}, "quantity"),
        ({"order_type": "LIMIT"}, "price"),
        ({"order_type": "LIMIT", "price": 1500.03}, "Tick size"),
        ({"tag": "not-alnum!"}, "tag"),
        ({"tag": "T" * 21}, "tag"),
        ({"tradingsymbol": "NOSUCH"}, "tradingsymbol"),
    ],
)
def test_kites_input_rules_refuse_the_order(kite, sim, changes, message):
    fields = {
        "exchange": "NSE",
        "tradingsymbol": INFY,
        "transaction_type": "BUY",
        "quantity": 1,
        "product": "CNC",
        "order_type": "MARKET",
        **changes,
    }

    with pytest.raises(kite_errors.InputException, match=message) as refused:
        kite.place_order("regular", **fields)

    assert refused.value.code == 400 and sim.orders_placed() == []


def test_an_unknown_order_id_is_an_input_exception_on_every_route(kite):
    for call in (
        lambda: kite.order_history("999"),
        lambda: kite.order_trades("999"),
        lambda: kite.modify_order("regular", "999", price=10.0),
        lambda: kite.cancel_order("regular", "999"),
    ):
        with pytest.raises(kite_errors.InputException) as refused:
            call()
        assert refused.value.code == 400


def test_holdings_carry_over_to_a_new_day(sim, kite):
    sim.set_price(INFY, 1500.0)
    buy(kite, 4)

    sim.new_day()

    [holding] = kite.holdings()
    assert (holding["tradingsymbol"], holding["quantity"]) == (INFY, 4)
    assert kite.orders() == [] and kite.positions()["net"] == []


# --- order updates ---------------------------------------------------------------------------


def test_every_order_change_is_pushed_through_the_ticker(kite_exchange, kite):
    ticker = kite_exchange.ticker
    ws = simple_websocket.Client.connect(
        f"{ticker.url}/?api_key={kite_exchange.api_key}&access_token={kite_exchange.access_token}"
    )
    try:
        order_id = buy(kite, 3, tag="L4up")
        kite_exchange.rest.set_price(INFY, 1500.0)
        seen = []
        while len(seen) < 2:
            message = ws.receive(timeout=5)
            assert message is not None, f"no order update after {seen}"
            if isinstance(message, str):
                seen.append(json.loads(message))
    finally:
        ws.close()

    assert [m["type"] for m in seen] == ["order", "order"]
    assert [m["data"]["status"] for m in seen] == ["OPEN", "COMPLETE"]
    assert {m["data"]["order_id"] for m in seen} == {order_id}
    assert seen[1]["data"]["tag"] == "L4up" and seen[1]["data"]["unfilled_quantity"] == 0


def test_postbacks_carry_kites_checksum(kite_exchange, kite):
    received: list[dict] = []
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        kite_exchange.rest.postback_url = f"http://127.0.0.1:{server.server_port}/postback"
        kite_exchange.rest.set_price(INFY, 1500.0)
        buy(kite, 1)
        assert arrived.wait(5), "no postback arrived"
    finally:
        server.shutdown()
        server.server_close()

    [payload] = received
    assert payload["status"] == "COMPLETE"
    signed = payload["order_id"] + payload["order_timestamp"] + kite_exchange.api_secret
    assert payload["checksum"] == hashlib.sha256(signed.encode()).hexdigest()


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("429", kite_errors.NetworkException, 429),
        ("500", kite_errors.GeneralException, 500),
        ("502", kite_errors.NetworkException, 502),
        ("503", kite_errors.NetworkException, 503),
        ("token", kite_errors.TokenException, 403),
    ],
)
@pytest.mark.parametrize(
    ("route", "call"),
    [
        ("orders", lambda kite: kite.orders()),
        ("positions", lambda kite: kite.positions()),
        ("gtt", lambda kite: kite.get_gtts()),
        ("order.place", lambda kite: buy(kite, 1)),
    ],
)
def test_an_error_fault_raises_kiteconnects_exception_once(
    sim, kite, fault, error, code, route, call
):
    sim.fail_next(route, fault)

    with pytest.raises(error) as failed:
        call(kite)

    assert failed.value.code == code
    assert sim.orders_placed() == []
    call(kite)
    assert [r.status for r in sim.requests_to(route)] == [code, 200]


def test_kiteconnects_route_names_are_accepted(sim, kite):
    sim.fail_next("portfolio.positions", "500", times=2)

    for _ in range(2):
        with pytest.raises(kite_errors.GeneralException):
            kite.positions()
    assert kite.positions() == {"net": [], "day": []}


def test_a_timeout_holds_the_reply_past_the_clients_timeout_without_placing(kite_exchange):
    kite_exchange.rest.fail_next("order.place", "timeout", seconds=30)

    with pytest.raises(requests.exceptions.ReadTimeout):
        buy(kite_exchange.client(timeout=0.3), 1, tag="L5to")

    assert kite_exchange.rest.orders_placed(tag="L5to") == []


def test_a_timeout_may_be_applied_before_the_reply_is_held(kite_exchange):
    kite_exchange.rest.fail_next("order.place", "timeout", seconds=30, applied=True)

    with pytest.raises(requests.exceptions.ReadTimeout):
        buy(kite_exchange.client(timeout=0.3), 1, tag="L6to")

    assert len(kite_exchange.rest.orders_placed(tag="L6to")) == 1


def test_latency_answers_normally_but_late(sim, kite):
    sim.fail_next("orders", "latency", seconds=0.3)

    started = time.monotonic()
    assert kite.orders() == []

    assert time.monotonic() - started >= 0.3


def test_a_lost_reply_leaves_the_order_in_the_book(sim, kite):
    sim.fail_next("order.place", "lost_reply")

    with pytest.raises(requests.exceptions.ConnectionError):
        buy(kite, 2, tag="L7lost")

    [placed] = sim.orders_placed(tag="L7lost")
    assert [o["order_id"] for o in kite.orders() if o["tag"] == "L7lost"] == [placed["order_id"]]
    assert sim.requests_to("order.place")[-1].status is None


def test_a_lost_reply_as_a_gateway_timeout_is_a_network_exception(sim, kite):
    sim.fail_next("order.cancel", "lost_reply", how="504")
    order_id = buy(kite, 1, "LIMIT", price=1000.0)

    with pytest.raises(kite_errors.NetworkException) as lost:
        kite.cancel_order("regular", order_id)

    assert lost.value.code == 504 and order(kite, order_id)["status"] == "CANCELLED"


def test_clear_faults_drops_every_queued_fault(sim, kite):
    sim.fail_next("orders", "500", times=3)
    sim.clear_faults()

    assert kite.orders() == []


def test_unknown_routes_and_faults_are_refused_when_queued(sim):
    with pytest.raises(ValueError, match="unknown route"):
        sim.fail_next("order.nope", "500")
    with pytest.raises(ValueError, match="unknown fault"):
        sim.fail_next("orders", "418")
    with pytest.raises(ValueError, match="order.place"):
        sim.fail_next("orders", "partial", filled=1)


def test_without_a_ticker_prices_go_straight_to_the_exchange_and_candles_are_served_too():
    with KiteRestSim() as sim:
        kite = sim.client()
        order_id = buy(kite, 2)
        sim.set_price("NSE:INFY", 1501.0)

        assert order(kite, order_id)["status"] == "COMPLETE"
        [infy] = [i for i in kite.instruments("NSE") if i["tradingsymbol"] == INFY]
        candles = kite.historical_data(infy["instrument_token"], "2026-03-02", "2026-03-06", "day")
        assert candles and candles[0]["date"].date().isoformat() == "2026-03-02"
        assert [r.route for r in sim.requests[-2:]] == ["instruments", "historical"]
        sim.expire_token()
        with pytest.raises(kite_errors.TokenException):
            kite.historical_data(infy["instrument_token"], "2026-03-02", "2026-03-06", "day")
