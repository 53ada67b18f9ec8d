"""Prices flow feed → store → engine → bus → Socket.IO, coalesced, to logged-in users only."""

from __future__ import annotations

import queue

import pytest
from markupsafe import escape

from tests.conftest import ADMIN_PASSWORD, login
from Webapp.execution.engine import PRICES_TOPIC
from Webapp.execution.runtime import Runtime
from Webapp.web.extensions import socketio
from Webapp.web.sockets import PriceBridge


@pytest.fixture
def runtime(app, settings):
    """The real runtime with the engine thread running; the test drives the feed by hand."""
    runtime = Runtime.build(settings.model_copy(update={"sim_seed": 11}))
    runtime.engine.start()
    app.extensions["ladder"].runtime = runtime
    yield runtime
    runtime.engine.stop()


def drive_ticks(runtime: Runtime, count: int) -> dict[str, float]:
    """Advance the simulated feed `count` ticks; wait until the engine has published them all."""
    published: queue.Queue = queue.Queue()
    unsubscribe = runtime.bus.subscribe(PRICES_TOPIC, lambda _t, changed: published.put(changed))
    try:
        for _ in range(count):
            runtime.feed.next_tick()
        latest = {symbol: quote.ltp for symbol, quote in runtime.store.snapshot().items()}
        seen: dict[str, float] = {}
        while seen != latest:
            changed = published.get(timeout=5)
            seen.update({symbol: quote.ltp for symbol, quote in changed.items()})
        return latest
    finally:
        unsubscribe()


def test_socket_without_a_session_is_refused(app, runtime):
    sio = socketio.test_client(app, flask_test_client=app.test_client())
    assert not sio.is_connected()


def test_socket_of_a_disabled_users_old_session_is_refused(app, client, admin, runtime):
    from Webapp.storage import users
    from Webapp.storage.db import transaction

    login(client, admin, ADMIN_PASSWORD)
    with transaction(app.extensions["ladder"].sessions) as session:
        users.create_user(session, "second", "second-admin-1", "admin")
        users.set_disabled(session, users.get_by_username(session, admin), True)
    sio = socketio.test_client(app, flask_test_client=client)
    assert not sio.is_connected()


def test_logged_in_socket_gets_a_snapshot_on_connect(app, admin_client, runtime):
    latest = drive_ticks(runtime, 60)
    sio = socketio.test_client(app, flask_test_client=admin_client)
    assert sio.is_connected()
    (event,) = sio.get_received()
    assert event["name"] == "prices"
    rows = event["args"][0]
    assert {row["symbol"]: float(row["ltp"]) for row in rows} == latest
    sio.disconnect()


def test_bridge_pushes_each_changed_symbol_once_with_its_latest_price(app, admin_client, runtime):
    bridge = PriceBridge(socketio, runtime, hz=4)
    sio = socketio.test_client(app, flask_test_client=admin_client)
    sio.get_received()  # the connect snapshot
    try:
        # 120 ticks over 50 symbols: each symbol moves two or three times.
        latest = drive_ticks(runtime, 120)
        assert bridge.flush() == len(latest)
        (event,) = sio.get_received()
        rows = event["args"][0]
        symbols = [row["symbol"] for row in rows]
        assert len(symbols) == len(set(symbols)) == 50
        assert {row["symbol"]: float(row["ltp"]) for row in rows} == latest
        # Nothing new happened: the next flush sends nothing.
        assert bridge.flush() == 0
        assert sio.get_received() == []
    finally:
        bridge.stop()
        sio.disconnect()


def test_pushed_row_carries_day_change_against_the_reference_price(app, admin_client, runtime):
    bridge = PriceBridge(socketio, runtime, hz=4)
    sio = socketio.test_client(app, flask_test_client=admin_client)
    sio.get_received()
    try:
        latest = drive_ticks(runtime, 1)
        bridge.flush()
        (row,) = sio.get_received()[0]["args"][0]
        ref = runtime.reference_prices()[row["symbol"]]
        expected = (latest[row["symbol"]] / ref - 1) * 100
        assert float(row["change_pct"]) == pytest.approx(expected, abs=0.005)
        assert len(row["time"]) == 8  # HH:MM:SS in IST
    finally:
        bridge.stop()
        sio.disconnect()


def test_dashboard_renders_current_prices_without_javascript(admin_client, runtime):
    latest = drive_ticks(runtime, 50)
    page = admin_client.get("/").text
    for symbol, ltp in latest.items():
        assert f'data-symbol="{escape(symbol)}"' in page  # M&M is M&amp;M in HTML
        assert f"{ltp:.2f}" in page


def test_a_flat_price_shows_no_minus_sign():
    from datetime import UTC, datetime

    from Webapp.market.ltp_store import Quote
    from Webapp.web.dashboard import price_row

    quote = Quote("INFY", 1499.99, 0, None, datetime.now(UTC))
    row = price_row(quote, 1500.0)
    assert (row["change_pct"], row["direction"]) == ("+0.00", "")
    assert price_row(quote, 1400.0)["direction"] == "up"
    assert price_row(quote, 1600.0)["direction"] == "down"
