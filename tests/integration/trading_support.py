"""Shared by the trading dashboard tests: runtimes on the test app and a sample TradingView."""

from __future__ import annotations

import queue
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from Webapp.execution.runtime import Runtime
from Webapp.execution.trading_view import (
    TRADING_TOPIC,
    DayPnl,
    ErrorView,
    LadderView,
    LegView,
    OrderView,
    SignalView,
    TradingState,
    TradingView,
)
from Webapp.services import start_services

# 09:30 IST: the opening time shown on the page.
OPENED = datetime(2025, 3, 10, 4, 0, tzinfo=UTC)


@pytest.fixture
def built_runtime(app, settings):
    """A runtime whose threads are not started: its engine's view stays what the test sets."""
    state = app.extensions["ladder"]
    runtime = Runtime.build(settings, sessions=state.sessions)
    state.runtime = runtime  # the app fixture's stop_services() stops it
    return runtime


@pytest.fixture
def running(app):
    """The real services, as `python -m Webapp` starts them: runtime, engine, bridges."""
    return start_services(app)


def show(runtime: Runtime, view: TradingView) -> None:
    """Make the (not started) engine's published snapshot `view`."""
    runtime.engine._view = view


def wait_for_view(
    runtime: Runtime, seen: queue.Queue, ok: Callable[[TradingView], bool], timeout: float = 5
) -> TradingView:
    """The first published view (or the current one) for which `ok` holds."""
    view = runtime.engine.view()
    while not ok(view):
        view = seen.get(timeout=timeout)
    return view


def watch_views(runtime: Runtime) -> queue.Queue:
    seen: queue.Queue = queue.Queue()
    runtime.bus.subscribe(TRADING_TOPIC, lambda _topic, view: seen.put(view))
    return seen


def leg(position: int, **changes) -> LegView:
    values = dict(
        symbol="INFY",
        position=position,
        state="open",
        qty=3,
        entry=1000.0,
        ltp=1005.0,
        pnl=15.0,
        pnl_pct=0.5,
        stop=975.0,
        gtt_trigger=975.0,
        target=1050.0,
        age_s=725.0,
    )
    values.update(changes)
    return LegView(**values)


def sample_view(**changes) -> TradingView:
    """One INFY ladder with two legs, a day's P&L, signals, orders and errors."""
    values = dict(
        state=TradingState.RUNNING,
        detail="",
        entries_paused=False,
        broker="paper",
        params_version=3,
        day=DayPnl(realised=120.5, charges=8.25, unrealised=-4.0, net=108.25, loss_limit_hit=False),
        ladders=(
            LadderView(
                symbol="INFY",
                state="open",
                opened_at=OPENED,
                legs=(
                    leg(2, qty=2, entry=1002.5, pnl=5.0, pnl_pct=0.25, stop=977.4, target=None),
                    leg(1),
                ),
                pnl=20.0,
            ),
        ),
        signals=(
            SignalView("TCS", "skipped", "below_ema", "close 3810.00 under EMA-21", OPENED, 0.4),
            SignalView("INFY", "open", "", "", OPENED, 1.2),
        ),
        orders=tuple(
            OrderView(
                f"L1P1B{n}",
                "INFY",
                "BUY",
                "MARKET",
                3,
                1000.0,
                "filled",
                "entry",
                OPENED + timedelta(seconds=n),
            )
            for n in range(12)
        ),
        errors=tuple(
            ErrorView(OPENED + timedelta(minutes=n), f"order rejected #{n}") for n in range(7)
        ),
        updated_at=OPENED + timedelta(minutes=5),
    )
    values.update(changes)
    return TradingView(**values)
