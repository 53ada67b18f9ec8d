"""The dashboard's trading panel: ladders, day P&L, engine state, signals, orders, live pushes."""

from __future__ import annotations

import re
from dataclasses import replace

from tests.integration import trading_support
from tests.integration.trading_support import OPENED, leg, sample_view, show
from Webapp.execution.trading_view import DayPnl, ErrorView, TradingState
from Webapp.web.extensions import socketio
from Webapp.web.sockets import TRADING_EVENT, PriceBridge, TradingBridge

# The shared fixtures (a not-started runtime; the real services), used here by name.
built_runtime = trading_support.built_runtime
running = trading_support.running


def leg_cells(page: str, symbol: str, position: int) -> list[str]:
    ladder = re.search(rf'<tbody class="ladder" data-symbol="{symbol}">(.*?)</tbody>', page, re.S)
    assert ladder, f"no ladder for {symbol}"
    row = re.search(rf'<tr class="leg" data-position="P{position}">(.*?)</tr>', ladder[1], re.S)
    assert row, f"no leg P{position} in {symbol}"
    return [
        re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row[1])
    ]


def test_dashboard_shows_each_open_leg_with_prices_stop_gtt_target_and_age(
    admin_client, built_runtime
):
    show(built_runtime, sample_view())
    page = admin_client.get("/").text
    #                                   P#    state   qty  entry      LTP        P&L      P&L %
    assert leg_cells(page, "INFY", 1) == [
        "",
        "P1",
        "open",
        "3",
        "1000.00",
        "1005.00",
        "+15.00",
        "+0.50",
        "975.00",
        "975.00",
        "1050.00",
        "12m 05s",
    ]
    #                                     stop     GTT      target     age
    p2 = leg_cells(page, "INFY", 2)
    assert p2[1:7] == ["P2", "open", "2", "1002.50", "1005.00", "+5.00"]
    assert p2[8:11] == ["977.40", "975.00", ""]  # a runner has no target
    # Legs in ladder order even when the engine lists them otherwise.
    assert page.index('data-position="P1"') < page.index('data-position="P2"')
    assert "opened 09:30:00 IST" in page  # 04:00 UTC


def test_todays_pnl_shows_realised_charges_unrealised_and_net_with_two_decimals(
    admin_client, built_runtime
):
    show(built_runtime, sample_view())
    page = admin_client.get("/").text
    fields = dict(re.findall(r'data-field="(\w+)">([^<]*)<', page))
    assert fields == {
        "realised": "+120.50",
        "charges": "8.25",
        "unrealised": "-4.00",
        "net": "+108.25",
    }
    assert "loss-limit" not in page


def test_daily_loss_limit_says_entries_stopped_for_today(admin_client, built_runtime):
    day = DayPnl(
        realised=-4200.0, charges=95.0, unrealised=-900.0, net=-5195.0, loss_limit_hit=True
    )
    show(built_runtime, sample_view(day=day))
    page = admin_client.get("/").text
    assert "Daily loss limit reached: entries stopped for today." in page
    assert 'data-field="net">-5195.00<' in page


def test_a_stopped_or_failed_engine_shows_why(admin_client, built_runtime):
    for state in (TradingState.FAILED, TradingState.STOPPED, TradingState.EMERGENCY):
        reason = f"{state}: leg INFY P1 has no GTT at the broker"
        show(built_runtime, sample_view(state=state, detail=reason))
        page = admin_client.get("/").text
        assert f'data-state="{state.value}"' in page
        assert f'<p class="trading-detail warn" id="trading-detail">{reason}</p>' in page


def test_a_running_engine_shows_no_stale_reason(admin_client, built_runtime):
    show(built_runtime, sample_view(detail="started by alice"))
    page = admin_client.get("/").text
    assert 'data-state="running"' in page
    assert "trading-detail" not in page


def test_signals_are_listed_collapsed_with_open_ladders_first(admin_client, built_runtime):
    show(built_runtime, sample_view())
    page = admin_client.get("/").text
    details = re.search(r'<details id="trading-signals"[^>]*>(.*?)</details>', page, re.S)
    assert details and "open" not in details[0].split(">")[0]  # collapsed by default
    rows = re.findall(r'<tr data-symbol="(\w+)" class="signal-(\w+)">', details[1])
    assert rows == [("INFY", "open"), ("TCS", "skipped")]
    assert "below ema" in details[1] and "close 3810.00 under EMA-21" in details[1]


def test_recent_orders_and_errors_are_short_lists_newest_first(admin_client, built_runtime):
    show(built_runtime, sample_view())
    page = admin_client.get("/").text
    orders = re.search(r'id="recent-orders">(.*?)</table>', page, re.S)[1]
    assert re.findall(r'data-tag="([^"]*)"', orders) == [f"L1P1B{n}" for n in range(10)]
    assert "09:30:00" in orders  # IST
    errors = re.search(r'id="recent-errors">(.*?)</ul>', page, re.S)[1]
    assert re.findall(r"order rejected #(\d)", errors) == ["0", "1", "2", "3", "4"]


def test_a_secret_in_an_engine_message_is_never_rendered(admin_client, built_runtime):
    leak = (
        "kite said: access_token=s3cr3tT0ken api_secret=abcdef123 (Authorization: token key1:tok2)"
    )
    show(
        built_runtime,
        sample_view(state=TradingState.FAILED, detail=leak, errors=(ErrorView(OPENED, leak),)),
    )
    for url in ("/", "/trading/panel"):
        page = admin_client.get(url).text
        assert "s3cr3tT0ken" not in page and "abcdef123" not in page and "tok2" not in page
        assert "access_token=[redacted]" in page


def test_panel_partial_is_the_same_panel_without_the_page(admin_client, built_runtime):
    show(built_runtime, sample_view())
    response = admin_client.get("/trading/panel", headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.text
    assert "<html" not in html
    assert html.strip().startswith('<div id="trading-panel" data-src="/trading/panel">')
    assert leg_cells(html, "INFY", 1) == leg_cells(admin_client.get("/").text, "INFY", 1)


def test_panel_partial_needs_a_login(client, built_runtime):
    response = client.get("/trading/panel", headers={"HX-Request": "true"})
    assert response.status_code == 401


def test_no_ladders_and_no_runtime_are_said_plainly(admin_client, app, built_runtime):
    show(built_runtime, sample_view(ladders=(), signals=(), orders=(), errors=()))
    page = admin_client.get("/").text
    assert "No open ladders." in page and "No orders yet." in page and "No scan yet." in page
    app.extensions["ladder"].runtime = None
    page = admin_client.get("/trading/panel").text
    assert "The trading engine is not running in this process." in page


def test_a_losing_leg_is_marked_down(admin_client, built_runtime):
    losing = leg(1, ltp=990.0, pnl=-30.0, pnl_pct=-1.0)
    ladder = replace(sample_view().ladders[0], legs=(losing,))
    show(built_runtime, sample_view(ladders=(ladder,)))
    page = admin_client.get("/").text
    assert '<td class="num pnl down">-30.00</td>' in page
    assert '<td class="num pnl-pct down">-1.00</td>' in page


# --- live pushes --------------------------------------------------------------------


def trading_events(sio) -> list[dict]:
    return [e["args"][0] for e in sio.get_received() if e["name"] == TRADING_EVENT]


def test_bridge_sends_one_push_for_several_views_with_the_latest_state(
    app, admin_client, built_runtime
):
    bridge = TradingBridge(socketio, built_runtime, hz=2)
    sio = socketio.test_client(app, flask_test_client=admin_client)
    sio.get_received()  # the connect snapshot of prices
    try:
        for state in (TradingState.RECONCILING, TradingState.RUNNING, TradingState.PAUSED):
            built_runtime.bus.publish("trading", sample_view(state=state))
        assert bridge.flush() is True
        (event,) = trading_events(sio)
        assert event == {
            "state": "paused",
            "entries_paused": False,
            "ladders": 1,
            "loss_limit_hit": False,
            "updated_at": "2025-03-10T04:05:00+00:00",
        }
        assert bridge.latest.state is TradingState.PAUSED
        # Nothing new: the next flush sends nothing.
        assert bridge.flush() is False
        assert trading_events(sio) == []
    finally:
        bridge.stop()
        sio.disconnect()


def test_viewers_get_the_push_too_and_strangers_cannot_connect(
    app, client, viewer_client, built_runtime
):
    bridge = TradingBridge(socketio, built_runtime)
    sio = socketio.test_client(app, flask_test_client=viewer_client)
    stranger = socketio.test_client(app, flask_test_client=app.test_client())
    try:
        assert not stranger.is_connected()
        built_runtime.bus.publish("trading", sample_view())
        bridge.flush()
        assert [e["state"] for e in trading_events(sio)] == ["running"]
    finally:
        bridge.stop()
        sio.disconnect()


def test_stopped_bridge_hears_nothing_more(built_runtime):
    bridge = TradingBridge(socketio, built_runtime)
    bridge.stop()
    built_runtime.bus.publish("trading", sample_view())
    assert bridge.flush() is False


def test_services_start_the_trading_bridge_next_to_the_price_bridge(app, running):
    bridges = app.extensions["ladder"].bridges
    assert sorted(type(b).__name__ for b in bridges) == ["PriceBridge", "TradingBridge"]
    assert any(isinstance(b, PriceBridge) for b in bridges)


def test_dashboard_loads_the_trading_script(admin_client, built_runtime):
    page = admin_client.get("/").text
    assert "/static/js/trading.js" in page
    assert admin_client.get("/static/js/trading.js").status_code == 200


def test_what_the_last_reconciliation_did_is_listed_leg_by_leg(admin_client, built_runtime):
    note = "INFY P1: sold while the app was away, 3 at 974.50 on 25 Nov 10:05:00 IST (stop_gtt)"
    show(built_runtime, replace(sample_view(), reconciled=(note,)))
    page = admin_client.get("/").text
    listed = re.search(
        r'<details class="reconciled" id="reconciled" open>(.*?)</details>', page, re.S
    )
    assert listed, "no reconciliation list"
    assert "settled 1 leg" in listed[1]
    assert f"<li>{note}</li>" in listed[1]
    show(built_runtime, sample_view())
    assert 'id="reconciled"' not in admin_client.get("/").text  # nothing to say: no list
