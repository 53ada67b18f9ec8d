"""A replayed paper session in a real browser: ladders open, the emergency stop closes every leg."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import select

from tests.e2e import test_browser as browser_tests
from tests.e2e.replay_session import (
    DayShape,
    ReplaySession,
    ladder_day,
    serve_replay_session,
    store_market,
    write_params,
)
from tests.e2e.test_browser import ARTIFACTS, log_in
from Webapp.market.calendar import MarketCalendar
from Webapp.states import ExitReason, GttIntentState, LegState
from Webapp.storage.models import AuditEntry
from Webapp.storage.trading_models import Trade

pytestmark = pytest.mark.browser

# The browser module's chromium and page.
browser = browser_tests.browser
page = browser_tests.page

DAY = date(2025, 3, 11)  # a Tuesday; the ten sessions before it are the 15m history
# Symbols of the nifty50 universe with history; the other 48 have none and are skipped.
START_PRICES = {"INFY": 1200.0, "ITC": 380.0}
# Opens 1.2% up, then every 5m bar closes 0.15% higher: the day change is inside
# [1, 5]% from the first scan at 09:30 (~1.65%) to the last bar at 10:45 (~3.9%),
# P2 (+0.25% over P1's fill) joins about 09:45, P3 (+1% over their average) not before
# about 10:15, no stop is hit and no target reached.
SHAPE = DayShape(gap_pct=1.2, step_pct=0.15, bars=18)
# Three market minutes a second: the scan (every 60 s of market time) runs on every
# engine timer tick, P2 joins about 10 s after the start, and the 90 minutes replayed
# take 30 s, longer than the test needs (the emergency stop needs no price anyway).
SPEED = 180


@pytest.fixture
def session(tmp_path) -> Iterator[ReplaySession]:
    calendar = MarketCalendar.nse()
    candles = []
    for symbol, start_price in START_PRICES.items():
        symbol_candles, _prev_close = ladder_day(
            symbol, day=DAY, start_price=start_price, shape=SHAPE, calendar=calendar
        )
        candles += symbol_candles
    market_url = f"sqlite:///{tmp_path / 'market.db'}"
    store_market(market_url, candles)
    params = write_params(tmp_path / "param.yaml")
    with serve_replay_session(
        tmp_path, day=DAY, speed=SPEED, params_path=params, market_url=market_url
    ) as served:
        yield served


LADDERS_WITH_OPEN_LEGS = """([symbols, positions]) => symbols.every((symbol) => {
    const ladder = document.querySelector(`#ladders tbody.ladder[data-symbol="${symbol}"]`);
    return ladder !== null && positions.every((position) => {
        const state = ladder.querySelector(`tr.leg[data-position="${position}"] td.leg-state`);
        return state !== null && state.textContent.trim() === "open";
    });
})"""

EMERGENCY_DONE = """() => {
    const state = document.querySelector("#trading-state");
    const detail = document.querySelector("#trading-detail");
    return state !== null && state.dataset.state === "stopped"
        && detail !== null && detail.textContent.includes("emergency stop completed")
        && document.querySelectorAll("#ladders tr.leg").length === 0
        && document.querySelector("#ladders tr.empty") !== null;
}"""


def test_emergency_stop_in_the_browser_closes_every_leg_of_a_replayed_ladder(session, page):
    symbols = sorted(START_PRICES)
    log_in(page, session, session.admin_password)
    page.wait_for_selector('#socket-status[data-state="connected"]')

    # The replay's scan opens a ladder per symbol and P2 joins it; the panel shows both legs.
    page.wait_for_function(LADDERS_WITH_OPEN_LEGS, arg=[symbols, ["P1", "P2"]])
    for symbol in symbols:
        ladder = page.locator(f'#ladders tbody.ladder[data-symbol="{symbol}"]')
        head = " ".join(ladder.locator("tr.ladder-head").text_content().split())
        assert head.startswith(f"{symbol} open · opened 09:"), head
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-ladders.png"), full_page=True)

    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#trading-emergency")
    assert dialogs and dialogs[0].startswith("Emergency stop: cancel every GTT")
    outcome = page.wait_for_selector('#trading-outcome[data-action="emergency"][data-ok="true"]')
    assert "closing" in outcome.text_content()

    # Every leg sold: the engine stops itself and the panel has no ladder left.
    page.wait_for_function(EMERGENCY_DONE)
    page.screenshot(path=str(ARTIFACTS / "dashboard-emergency-stop.png"), full_page=True)

    with session.app.extensions["ladder"].sessions() as db:
        legs = db.scalars(select(Trade).order_by(Trade.trade_id)).all()
        assert {leg.symbol for leg in legs} == set(symbols)
        for symbol in symbols:
            positions = {leg.position_number for leg in legs if leg.symbol == symbol}
            assert {1, 2} <= positions, f"{symbol}: legs {sorted(positions)}"
        for leg in legs:
            where = f"{leg.symbol} P{leg.position_number}"
            assert leg.status == LegState.CLOSED, where
            assert leg.exit_reason == ExitReason.EMERGENCY, where
            assert leg.exit_price is not None and leg.exit_time is not None, where
            sells = [order for order in leg.orders if order.side == "SELL"]
            assert len(sells) == 1, f"{where}: sold {len(sells)} times"
            sell = sells[0]
            assert (sell.order_type, sell.purpose, sell.state) == (
                "MARKET",
                "emergency",
                "filled",
            ), where
            assert sell.filled_qty == leg.qty, where
            # Cancel first: every GTT of the leg was deleted before the sell.
            assert leg.gtts and all(g.state == GttIntentState.DELETED for g in leg.gtts), where
        stops = db.scalars(select(AuditEntry).where(AuditEntry.action == "engine_emergency")).all()
        assert [(entry.actor, entry.detail["ok"]) for entry in stops] == [("admin", True)]

    # The paper broker agrees: nothing is held any more.
    assert {p.symbol: p.quantity for p in session.runtime.broker.positions()} == dict.fromkeys(
        symbols, 0
    )
    assert session.runtime.broker.holdings() == []
