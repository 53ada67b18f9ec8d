"""The dashboard: trading panel and controls, live prices (pushed over Socket.IO), status."""

from __future__ import annotations

from flask import Blueprint, render_template

from Webapp.execution.runtime import Runtime
from Webapp.market.ltp_store import Quote
from Webapp.web.appstate import app_state
from Webapp.web.timefmt import ist
from Webapp.web.trading import trading_controls, trading_panel

bp = Blueprint("dashboard", __name__)


def price_row(quote: Quote, reference_price: float | None) -> dict:
    """One row of the prices table; the page and the socket push both use it."""
    change_pct = None
    if reference_price:
        # + 0.0 turns a rounded -0.0 into 0.0, so a flat price shows "+0.00", not "-0.00".
        change_pct = round((quote.ltp / reference_price - 1) * 100, 2) + 0.0
    direction = ""
    if change_pct:
        direction = "up" if change_pct > 0 else "down"
    return {
        "symbol": quote.symbol,
        "ltp": f"{quote.ltp:.2f}",
        "change_pct": None if change_pct is None else f"{change_pct:+.2f}",
        "direction": direction,
        "volume": quote.volume,
        "time": ist(quote.received_at, "%H:%M:%S"),
    }


def price_rows(runtime: Runtime | None) -> list[dict]:
    if runtime is None:
        return []
    refs = runtime.reference_prices()
    snapshot = runtime.store.snapshot()
    return [price_row(snapshot[symbol], refs.get(symbol)) for symbol in sorted(snapshot)]


@bp.get("/")
def index():
    runtime = app_state().runtime
    return render_template(
        "dashboard.html",
        rows=price_rows(runtime),
        universe=[] if runtime is None else runtime.universe,
        health=None if runtime is None else runtime.health(),
        trading=trading_panel(runtime),
        controls=trading_controls(runtime),
    )
