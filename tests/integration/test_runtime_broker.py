"""The broker in the running app: the paper account in the app DB, Kite (kitesim) when live."""

from __future__ import annotations

import logging
import queue
import re
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import ADMIN_PASSWORD, REPO_ROOT, add_user, csrf_token, login, with_settings
from tests.helpers import wait_for_trading
from Webapp import create_app
from Webapp.broker.base import (
    CircuitOpen,
    InputRejected,
    NetworkUnavailable,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    OrderUpdate,
    Side,
)
from Webapp.broker.kite import KiteBroker
from Webapp.broker.paper import PaperBroker
from Webapp.config.settings import SettingsError, load_settings
from Webapp.execution.runtime import Runtime, StartupError
from Webapp.services import start_services, stop_services
from Webapp.storage import migrate

INSTRUMENTS = REPO_ROOT / "tests" / "data" / "instruments_nse_sample.csv"
WAIT_S = 10.0


def resting_buy(tag: str, quantity: int = 2) -> OrderRequest:
    """A LIMIT buy far below the market: it rests."""
    return OrderRequest("INFY", Side.BUY, quantity, OrderType.LIMIT, tag=tag, price=100.0)


def market_buy(tag: str, quantity: int) -> OrderRequest:
    return OrderRequest("INFY", Side.BUY, quantity, OrderType.MARKET, tag=tag)


def broker_line(page: str) -> str:
    match = re.search(r'<p class="meta" id="broker-status".*?</p>', page, re.S)
    assert match, "no broker status line on the page"
    return " ".join(match.group(0).split())


# --- paper ---------------------------------------------------------------------------------


def test_paper_runtime_keeps_its_open_orders_across_a_restart(app):
    runtime = start_services(app)
    assert isinstance(runtime.broker, PaperBroker)
    placed = runtime.broker.place_order(resting_buy("Lrestart1"))
    assert placed.state is OrderState.OPEN
    stop_services(app)

    again = start_services(app)
    assert again.broker is not runtime.broker
    assert [(o.order_id, o.tag, o.state, o.quantity) for o in again.broker.orders()] == [
        (placed.order_id, "Lrestart1", OrderState.OPEN, 2)
    ]


def test_a_new_paper_account_opens_with_paper_starting_cash_and_keeps_its_own_after(settings):
    first = Runtime.build(with_settings(settings, paper_starting_cash=250_000))
    assert first.broker.margins().available_cash == 250_000
    first.own_db_engine.dispose()
    second = Runtime.build(with_settings(settings, paper_starting_cash=999_999))
    assert second.broker.margins().available_cash == 250_000  # the account already exists
    second.own_db_engine.dispose()


def test_paper_starting_cash_defaults_to_ten_lakh(settings):
    assert settings.paper_starting_cash == 1_000_000


@pytest.mark.parametrize("cash", ["0", "-5000", "nan", "inf", "lots"])
def test_paper_starting_cash_must_be_a_positive_amount(monkeypatch, cash):
    monkeypatch.setenv("PAPER_STARTING_CASH", cash)
    with pytest.raises(SettingsError, match="PAPER_STARTING_CASH"):
        load_settings()


def test_paper_orders_price_off_the_stores_latest_quote(settings):
    runtime = Runtime.build(settings)  # not started: no simulated tick moves the price
    try:
        with pytest.raises(InputRejected, match="no last price"):
            runtime.broker.place_order(market_buy("Lnoprice1", 1))
        runtime.store.update("INFY", 1500.0, 10)
        with pytest.raises(OrderRejected, match="insufficient funds"):  # 1,000 × 1,500 > 10 lakh
            runtime.broker.place_order(market_buy("Lbig1", 1000))
        filled = runtime.broker.place_order(market_buy("Lsmall1", 1))
        assert filled.state is OrderState.FILLED and filled.average_price >= 1500.0
    finally:
        runtime.own_db_engine.dispose()


def test_healthz_shows_the_paper_broker(app, client):
    start_services(app)
    body = client.get("/healthz").get_json()
    assert body["broker"] == {
        "ok": True,
        "name": "paper",
        "circuit": "closed",
        "token_valid": True,
        "last_error": None,
    }


# --- live: refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("feed", ["sim", "replay"])
def test_live_mode_needs_the_kite_feed(settings, feed):
    with pytest.raises(StartupError) as caught:
        Runtime.build(with_settings(settings, trading_mode="live", feed=feed))
    assert f"TRADING_MODE=live needs FEED=kite (FEED={feed} is set)" in str(caught.value)


def test_live_mode_without_an_api_key_says_where_to_put_it(settings):
    with pytest.raises(StartupError) as caught:
        Runtime.build(with_settings(settings, trading_mode="live", feed="kite"))
    message = str(caught.value)
    assert "Settings page" in message and "KITE_API_KEY" in message


# --- live against kitesim --------------------------------------------------------------------


@pytest.fixture
def live_settings(settings, kite_exchange, tmp_path):
    """TRADING_MODE=live, FEED=kite, every Kite root at kitesim; no credentials yet."""
    rest = kite_exchange.rest
    rest.redirect_url = "http://localhost/kite/callback"  # the test client's callback
    return with_settings(
        settings,
        trading_mode="live",
        feed="kite",
        kite_ws_root=kite_exchange.ticker.url,
        kite_rest_root=rest.url,
        kite_login_url=f"{rest.url}/connect/login",
        kite_instruments_path=INSTRUMENTS,
        market_database_url=f"sqlite:///{tmp_path / 'market.db'}",
    )


@pytest.fixture
def env_login(live_settings, kite_exchange):
    """Live settings with the api key and the day's token from the environment."""
    return with_settings(
        live_settings,
        kite_api_key=kite_exchange.api_key,
        kite_access_token=kite_exchange.access_token,
    )


@pytest.fixture
def make_live_app():
    """make(settings) -> (app, admin's test client); services stopped after the test."""
    apps = []

    def make(settings):
        app = create_app({"TESTING": True}, settings=settings)
        migrate.upgrade(settings.resolved_database_url)
        apps.append(app)
        add_user(app, "alice", ADMIN_PASSWORD, "admin")
        client = app.test_client()
        assert login(client, "alice", ADMIN_PASSWORD).status_code == 302
        return app, client

    yield make
    for app in apps:
        stop_services(app)
        app.extensions["ladder"].db_engine.dispose()


def all_subscribed(kite_exchange) -> None:
    ticker = kite_exchange.ticker
    ticker.wait_until(lambda: len(ticker.subscriptions()) == 50, WAIT_S, "50 subscriptions")


def test_live_runtime_hears_kite_order_updates_through_the_ticker(env_login, kite_exchange, caplog):
    caplog.set_level(logging.INFO, logger="Webapp.execution.runtime")
    runtime = Runtime.build(env_login)
    broker = runtime.broker
    assert isinstance(broker, KiteBroker)
    heard: queue.Queue[OrderUpdate] = queue.Queue()
    broker.on_order_update(heard.put)
    runtime.start()
    try:
        status = broker.status()
        assert (status.circuit, status.token_valid, status.last_error) == ("closed", True, None)
        assert status.detail["polling"] is True
        assert "live mode: broker connected" in caplog.text
        all_subscribed(kite_exchange)
        broker.stop()  # no order poll from here on: only the ticker can bring the update
        kite_exchange.rest.set_price("INFY", 1500.0)
        order_id = kite_exchange.client().place_order(
            variety="regular",
            exchange="NSE",
            tradingsymbol="INFY",
            transaction_type="BUY",
            quantity=3,
            product="CNC",
            order_type="LIMIT",
            price=1400.0,
            tag="Lticker1",
        )
        update = heard.get(timeout=WAIT_S)
        assert (update.order.order_id, update.source, update.order.tag) == (
            order_id,
            "ticker",
            "Lticker1",
        )
        assert update.order.state is OrderState.OPEN
    finally:
        runtime.stop()
    assert broker.status().detail["polling"] is False


def kite_login(client) -> None:
    """/kite/login, kitesim's login page, and back to /kite/callback."""
    out = client.get("/kite/login")
    assert out.status_code == 302
    back = requests.get(out.headers["Location"], allow_redirects=False, timeout=5)
    parts = urlsplit(back.headers["Location"])
    assert parts.path == "/kite/callback"
    assert client.get(f"{parts.path}?{parts.query}").headers["Location"] == "/"


def test_live_runtime_without_a_token_waits_for_a_kite_login_then_trades(
    live_settings, kite_exchange, make_live_app, caplog
):
    caplog.set_level(logging.INFO, logger="Webapp.execution.runtime")
    app, client = make_live_app(live_settings)
    page = client.get("/settings/")
    saved = client.post(
        "/settings/",
        data={
            "api_key": kite_exchange.api_key,
            "api_secret": kite_exchange.api_secret,
            "csrf_token": csrf_token(page.text),
        },
    )
    assert saved.status_code == 302
    runtime = start_services(app)
    broker = runtime.broker
    assert isinstance(broker, KiteBroker)
    assert "live mode: broker paused until a Kite login" in caplog.text
    paused = broker.status()
    assert (paused.token_valid, paused.last_error) == (False, "no access token: log in to Kite")
    line = broker_line(client.get("/").text)
    assert "Broker: <strong>kite</strong>" in line and "log in to Kite" in line
    # A missing token is a login prompt, not an outage.
    assert client.get("/healthz").get_json()["broker"] == {
        "ok": True,
        "name": "kite",
        "circuit": "closed",
        "token_valid": False,
        "last_error": "no access token: log in to Kite",
    }

    kite_login(client)

    resumed = broker.status()
    assert (resumed.token_valid, resumed.last_error) == (True, None)
    assert broker.orders() == []  # sent, with the new session: Kite accepts it
    assert "last error" not in broker_line(client.get("/").text)
    assert client.get("/healthz").get_json()["broker"]["token_valid"] is True
    assert kite_exchange.access_token not in caplog.text


def test_healthz_is_503_while_the_kite_circuit_is_open(env_login, kite_exchange, make_live_app):
    app, client = make_live_app(env_login)
    runtime = start_services(app)
    broker = runtime.broker
    all_subscribed(kite_exchange)
    wait_for_trading(runtime)  # the start-up reconciliation's reads are done
    assert client.get("/healthz").status_code == 200
    assert 'data-circuit="closed"' in broker_line(client.get("/").text)

    broker.stop()  # the order poll must not take the faults meant for the calls below
    kite_exchange.rest.fail_next("orders", "503", times=10)
    with pytest.raises(NetworkUnavailable):
        broker.orders()  # three sends, three failures
    with pytest.raises(CircuitOpen):
        broker.orders()  # two more: the circuit opens before the third

    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["broker"]["circuit"] == "open"
    assert response.get_json()["broker"]["ok"] is False
    assert 'data-circuit="open"' in broker_line(client.get("/").text)
