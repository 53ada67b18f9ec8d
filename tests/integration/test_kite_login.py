"""Kite login end to end against kitesim: state, callback, encrypted token, expiry, postback."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import text

from tests.conftest import csrf_token, with_settings
from tests.kitesim.rest import KiteRestSim
from Webapp import create_app
from Webapp.broker import kite_session
from Webapp.broker.base import OrderState
from Webapp.broker.kite import KiteBroker
from Webapp.broker.secrets import KEY_FILE_NAME
from Webapp.storage import migrate

API_SECRET = "kitesim_api_secret"


@pytest.fixture
def sim() -> Iterator[KiteRestSim]:
    """kitesim's REST half; Kite sends the browser back to the test client's callback."""
    rest = KiteRestSim(api_secret=API_SECRET, redirect_url="http://localhost/kite/callback")
    rest.start()
    try:
        yield rest
    finally:
        rest.stop()


@pytest.fixture
def app(settings, sim):
    """The app with Kite's REST root and login page both at kitesim."""
    kite_settings = with_settings(
        settings, kite_rest_root=sim.url, kite_login_url=f"{sim.url}/connect/login"
    )
    app = create_app({"TESTING": True}, settings=kite_settings)
    migrate.upgrade(kite_settings.resolved_database_url)
    yield app
    app.extensions["ladder"].runtime = None
    app.extensions["ladder"].db_engine.dispose()


def save_credentials(client, sim: KiteRestSim, api_secret: str = API_SECRET) -> None:
    page = client.get("/settings/")
    response = client.post(
        "/settings/",
        data={
            "api_key": sim.api_key,
            "api_secret": api_secret,
            "csrf_token": csrf_token(page.text),
        },
    )
    assert response.status_code == 302


def kite_redirect(client) -> str:
    """/kite/login, then Kite's login page (kitesim: another server, so through requests)."""
    out = client.get("/kite/login")
    assert out.status_code == 302
    back = requests.get(out.headers["Location"], allow_redirects=False, timeout=5)
    assert back.status_code == 302
    return back.headers["Location"]


def callback(client, location: str):
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "localhost", "/kite/callback")
    return client.get(f"{parts.path}?{parts.query}")


def test_login_stores_the_token_encrypted_and_the_dashboard_shows_its_expiry(
    app, admin_client, sim
):
    save_credentials(admin_client, sim)
    out = admin_client.get("/kite/login")
    login_url = urlsplit(out.headers["Location"])
    assert f"{login_url.scheme}://{login_url.netloc}{login_url.path}" == f"{sim.url}/connect/login"
    query = parse_qs(login_url.query)
    assert query["api_key"] == [sim.api_key] and query["v"] == ["3"]
    assert query["redirect_params"][0].startswith("state=")

    back = requests.get(out.headers["Location"], allow_redirects=False, timeout=5)
    response = callback(admin_client, back.headers["Location"])
    assert (response.status_code, response.headers["Location"]) == (302, "/")

    page = admin_client.get("/")
    assert "Logged in to Kite as" in page.text
    assert "valid until 06:00 IST" in page.text
    assert 'data-state="valid"' in page.text
    assert sim.sessions.logins == [sim.access_token]
    with app.extensions["ladder"].db_engine.connect() as conn:
        row = " ".join(str(v) for v in conn.execute(text("SELECT * FROM kite_credentials")).one())
    assert sim.access_token not in row and API_SECRET not in row and sim.api_key not in row


def test_the_stored_token_works_for_kite_calls(app, admin_client, sim):
    save_credentials(admin_client, sim)
    callback(admin_client, kite_redirect(admin_client))
    with app.extensions["ladder"].sessions() as session:
        box = app.extensions["ladder_secrets"]
        token = kite_session.valid_access_token(session, box, kite_session.utc_now())
    assert sim.client(token).profile()["user_id"] == sim.sessions.user_id


def test_replaying_the_callback_fails(admin_client, sim):
    save_credentials(admin_client, sim)
    location = kite_redirect(admin_client)
    callback(admin_client, location)
    admin_client.get("/")  # consume the success message
    again = callback(admin_client, location)
    assert again.headers["Location"] == "/"
    assert "already used" in admin_client.get("/").text
    assert len(sim.sessions.logins) == 1


def test_wrong_state_fails_and_leaves_the_request_token_unused(admin_client, sim):
    save_credentials(admin_client, sim)
    location = kite_redirect(admin_client)
    forged = location.replace("state=", "state=x")
    callback(admin_client, forged)
    assert "not one this session asked for" in admin_client.get("/").text
    assert sim.sessions.logins == []


def test_a_callback_nobody_asked_for_fails(admin_client, sim):
    save_credentials(admin_client, sim)
    token = sim.issue_request_token()
    callback(
        admin_client,
        f"http://localhost/kite/callback?status=success&request_token={token}&state=guess",
    )
    assert "Kite login failed" in admin_client.get("/").text
    assert sim.sessions.logins == []


def test_stale_state_fails(admin_client, sim, monkeypatch):
    save_credentials(admin_client, sim)
    location = kite_redirect(admin_client)
    import Webapp.web.kite_auth as kite_auth

    later = kite_auth.time.time() + kite_auth.STATE_TTL_S + 1
    monkeypatch.setattr(kite_auth.time, "time", lambda: later)
    callback(admin_client, location)
    assert "over ten minutes old" in admin_client.get("/").text


def test_bad_request_token_shows_kites_reason(admin_client, sim):
    save_credentials(admin_client, sim)
    location = kite_redirect(admin_client)
    token = parse_qs(urlsplit(location).query)["request_token"][0]
    callback(admin_client, location.replace(token, "0" * len(token)))
    page = admin_client.get("/").text
    assert "Kite refused the login: Token is invalid or has expired." in page
    assert 'data-state="missing"' in page


def test_wrong_api_secret_shows_kites_reason_without_the_secret(admin_client, sim):
    save_credentials(admin_client, sim, api_secret="wrong_secret_value")
    callback(admin_client, kite_redirect(admin_client))
    page = admin_client.get("/").text
    assert "Invalid `checksum`." in page
    assert "wrong_secret_value" not in page


def test_cancelled_login_is_reported(admin_client, sim):
    save_credentials(admin_client, sim)
    location = kite_redirect(admin_client).replace("status=success", "status=cancelled")
    callback(admin_client, location)
    assert "did not complete the login" in admin_client.get("/").text


def test_expired_token_pauses_trading_until_the_admin_logs_in(admin_client, sim, monkeypatch):
    save_credentials(admin_client, sim)
    callback(admin_client, kite_redirect(admin_client))
    with admin_client.application.extensions["ladder"].sessions() as session:
        expires = kite_session.token_status(session, kite_session.utc_now()).expires_at
    monkeypatch.setattr(kite_session, "utc_now", lambda: expires + timedelta(minutes=1))
    page = admin_client.get("/").text
    assert "Kite session expired — trading paused until you log in" in page
    assert 'data-state="expired"' in page
    assert "Log in to Kite" in page


def test_status_partial_refreshes_in_place(admin_client, sim):
    save_credentials(admin_client, sim)
    before = admin_client.get("/kite/status", headers={"HX-Request": "true"})
    assert before.status_code == 200 and 'data-state="missing"' in before.text
    assert "<html" not in before.text  # a fragment for htmx, not a page
    callback(admin_client, kite_redirect(admin_client))
    after = admin_client.get("/kite/status", headers={"HX-Request": "true"})
    assert 'data-state="valid"' in after.text and "Log in to Kite" not in after.text


def test_viewer_sees_the_status_but_cannot_log_in(app, admin_client, sim):
    save_credentials(admin_client, sim)
    admin_client.post("/logout", data={"csrf_token": csrf_token(admin_client.get("/").text)})
    from tests.conftest import VIEWER_PASSWORD, add_user, login

    add_user(app, "victor", VIEWER_PASSWORD, "viewer")
    login(admin_client, "victor", VIEWER_PASSWORD)
    page = admin_client.get("/").text
    assert 'data-state="missing"' in page and "Log in to Kite" not in page
    assert admin_client.get("/kite/login").status_code == 403
    assert admin_client.get("/kite/callback?status=success").status_code == 403


def test_login_before_credentials_are_saved_sends_the_admin_to_settings(admin_client):
    response = admin_client.get("/kite/login")
    assert response.headers["Location"] == "/settings/"


def test_without_a_login_url_setting_the_redirect_goes_to_kite(settings, sim):
    from tests.conftest import ADMIN_PASSWORD, add_user, login

    app = create_app({"TESTING": True}, settings=settings)
    migrate.upgrade(settings.resolved_database_url)
    add_user(app, "alice", ADMIN_PASSWORD, "admin")
    client = app.test_client()
    login(client, "alice", ADMIN_PASSWORD)
    save_credentials(client, sim)
    location = client.get("/kite/login").headers["Location"]
    assert location.startswith(f"https://kite.zerodha.com/connect/login?api_key={sim.api_key}&v=3")
    app.extensions["ladder"].db_engine.dispose()


# --- postback ------------------------------------------------------------------------


class BrokerRuntime:
    """The running process as the postback sees it: only its broker matters here."""

    def __init__(self, broker) -> None:
        self.broker = broker

    def stop(self) -> None:
        self.broker.stop()


def signed(update: dict, api_secret: str = API_SECRET) -> dict:
    body = update["order_id"] + (update["order_timestamp"] or "") + api_secret
    return {**update, "checksum": hashlib.sha256(body.encode()).hexdigest()}


def resting_order_update(sim: KiteRestSim, tag: str) -> dict:
    """The order update kitesim sends for a new limit order resting below the market."""
    sim.set_price("INFY", 1500.0)
    sim.client().place_order(
        variety="regular",
        exchange="NSE",
        tradingsymbol="INFY",
        transaction_type="BUY",
        quantity=1,
        product="CNC",
        order_type="LIMIT",
        price=1400.0,
        tag=tag,
    )
    return sim.order_updates[-1]


@pytest.fixture
def order_update(sim) -> dict:
    return resting_order_update(sim, tag="L1")


@pytest.fixture
def broker(app, sim):
    broker = KiteBroker(sim.api_key, sim.access_token, root=sim.url)
    app.extensions["ladder"].runtime = BrokerRuntime(broker)
    return broker


def test_signed_postback_reaches_the_running_broker(app, admin_client, sim, broker, order_update):
    save_credentials(admin_client, sim)
    updates = []
    broker.on_order_update(updates.append)
    response = app.test_client().post("/kite/postback", json=signed(order_update))
    assert response.status_code == 200
    assert [u.order.order_id for u in updates] == [order_update["order_id"]]


def test_an_update_postback_of_a_modified_order_keeps_it_open_with_its_new_price(
    app, admin_client, sim, broker, order_update, caplog
):
    """Kite posts `UPDATE` when an open order is modified: a known, non-final status."""
    save_credentials(admin_client, sim)
    updates = []
    broker.on_order_update(updates.append)
    client = app.test_client()
    assert client.post("/kite/postback", json=signed(order_update)).status_code == 200
    sim.client().modify_order("regular", order_update["order_id"], price=1410.0)
    [modified] = [u for u in sim.order_updates if u["status"] == "UPDATE"]

    assert client.post("/kite/postback", json=signed(modified)).status_code == 200

    assert [(u.order.state, u.order.price, u.source) for u in updates] == [
        (OrderState.OPEN, 1400.0, "postback"),
        (OrderState.OPEN, 1410.0, "postback"),
    ]
    assert "unknown Kite order status" not in caplog.text


def test_postback_with_a_bad_checksum_is_refused_and_logged_without_the_payload(
    app, admin_client, sim, broker, order_update, caplog
):
    save_credentials(admin_client, sim)
    forged = signed(order_update, api_secret="not_the_secret")
    response = app.test_client().post("/kite/postback", json=forged)
    assert response.status_code == 403
    refused = [r.getMessage() for r in caplog.records if "postback refused" in r.getMessage()]
    assert len(refused) == 1 and order_update["order_id"] in refused[0]
    assert forged["checksum"] not in caplog.text


def test_postback_without_a_running_broker_is_503(app, admin_client, sim, order_update):
    save_credentials(admin_client, sim)
    response = app.test_client().post("/kite/postback", json=signed(order_update))
    assert response.status_code == 503


def test_postback_before_credentials_are_saved_is_503(app, order_update):
    assert app.test_client().post("/kite/postback", json=signed(order_update)).status_code == 503


def test_postback_needs_a_json_object(app):
    assert app.test_client().post("/kite/postback", data="x").status_code == 400


# --- the feed's token provider ---------------------------------------------------------


def test_feed_reads_the_stored_login_first_then_the_environment(app, admin_client, sim):
    from Webapp.broker.factory import KiteCredentialSource

    settings = with_settings(
        app.extensions["ladder"].settings, kite_api_key="env_key", kite_access_token="env_token"
    )
    source = KiteCredentialSource(settings)
    assert (source.api_key(), source.access_token()) == ("env_key", "env_token")
    save_credentials(admin_client, sim)
    callback(admin_client, kite_redirect(admin_client))
    assert (source.api_key(), source.access_token()) == (sim.api_key, sim.access_token)


# --- no secret anywhere after a full run -----------------------------------------------


@pytest.fixture
def served(settings, sim) -> Iterator[str]:
    """The app on a real local HTTP server (werkzeug's request log included); its base URL."""
    from werkzeug.serving import make_server

    from tests.conftest import ADMIN_PASSWORD, add_user

    kite_settings = with_settings(
        settings, kite_rest_root=sim.url, kite_login_url=f"{sim.url}/connect/login"
    )
    app = create_app({"TESTING": True}, settings=kite_settings)
    migrate.upgrade(kite_settings.resolved_database_url)
    add_user(app, "alice", ADMIN_PASSWORD, "admin")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    sim.redirect_url = f"{base}/kite/callback"
    try:
        yield app, base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        app.extensions["ladder"].runtime = None
        app.extensions["ladder"].db_engine.dispose()


def every_logger_at_debug(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            caplog.set_level(logging.DEBUG, logger=name)


def test_no_secret_in_any_log_line_page_or_reply_after_a_full_run(served, sim, caplog):
    from tests.conftest import ADMIN_PASSWORD

    every_logger_at_debug(caplog)
    app, base = served
    ours, kites = [], []
    web = requests.Session()
    web.hooks["response"].append(
        lambda r, *args, **kwargs: (ours if r.url.startswith(base) else kites).append(r)
    )

    def form_post(path: str, **data: str) -> requests.Response:
        page = web.get(base + path, timeout=5)
        return web.post(base + path, data={**data, "csrf_token": csrf_token(page.text)}, timeout=5)

    form_post("/login", username="alice", password=ADMIN_PASSWORD)
    form_post("/settings/", api_key=sim.api_key, api_secret=API_SECRET)
    final = web.get(base + "/kite/login", timeout=5)  # Kite's page, the callback, the dashboard
    assert final.url == base + "/" and "valid until 06:00 IST" in final.text
    callback_url = kites[-1].headers["Location"]
    assert "already used" in web.get(callback_url, timeout=5).text  # a replay
    bad = web.get(base + "/kite/login", allow_redirects=False, timeout=5)
    back = requests.get(bad.headers["Location"], allow_redirects=False, timeout=5)
    kites.append(back)
    token = parse_qs(urlsplit(back.headers["Location"]).query)["request_token"][0]
    refused = web.get(back.headers["Location"].replace(token, "f" * len(token)), timeout=5)
    assert "Kite refused the login" in refused.text
    web.get(base + "/settings/", timeout=5)

    box = app.extensions["ladder_secrets"]
    stored = kite_session.StoredKite(app.extensions["ladder"].sessions, box)
    broker = KiteBroker(sim.api_key, stored.access_token(), root=sim.url)
    app.extensions["ladder"].runtime = BrokerRuntime(broker)
    update = resting_order_update(sim, tag="L2")
    assert web.post(base + "/kite/postback", json=signed(update), timeout=5).status_code == 200
    forged = signed(update, api_secret="forged")
    assert web.post(base + "/kite/postback", json=forged, timeout=5).status_code == 403

    request_tokens = [
        parse_qs(urlsplit(r.headers["Location"]).query)["request_token"][0]
        for r in kites
        if "request_token=" in r.headers.get("Location", "")
    ]
    secrets = {
        "api_secret": API_SECRET,
        "fernet key": (Path(app.instance_path) / KEY_FILE_NAME).read_text().strip(),
        **{f"access_token {i}": t for i, t in enumerate(sim.sessions.logins)},
        **{f"request_token {i}": t for i, t in enumerate(request_tokens)},
    }
    assert len(request_tokens) == 2 and len(sim.sessions.logins) == 1
    # The test's own HTTP client plays the browser; its urllib3 lines about the app's URLs
    # are the browser's, not the server's. The app's own urllib3 lines (to Kite) all count.
    server_records = [
        r for r in caplog.records
        if not (r.name.startswith("urllib3") and urlsplit(base).netloc in r.getMessage())
    ]  # fmt: skip
    handler = logging.Formatter("%(levelname)s %(name)s %(message)s")
    haystacks = {
        "log": "\n".join(handler.format(r) for r in server_records),
        "replies": "\n".join(f"{r.status_code} {dict(r.headers)}\n{r.text}" for r in ours),
    }
    # The captured logs are real: the werkzeug request lines and the app's own lines.
    for expected in ("GET /kite/callback?", "request_token=[redacted]", "Kite login complete"):
        assert expected in haystacks["log"]
    assert "postback refused" in haystacks["log"]
    leaks = [
        (name, where) for name, value in secrets.items() for where, text in haystacks.items()
        if value in text
    ]  # fmt: skip
    assert leaks == []
