"""A GTT that fires at Kite but whose sell Kite refuses, live: shown, and sold at market once.

STRATEGY.md "Protection at the broker (GTT)": Kite reports such a GTT `triggered` with
`orders[i].result.order_result` `{"status": "failed", "order_id": "", "rejection_reason"}`;
nothing else will sell the leg, so the engine shows the reason and sells the leg itself
at market, once. The engine is the live rig of the crash tests (a KiteBroker on kitesim,
through the unmodified official client); kitesim's `failed` fault on `gtt.trigger` makes
the firing GTT's order fail. Every assertion about orders reads kitesim's order book: the
exchange's view, not the engine's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.integration.crash_child import (
    BUY_AT,
    QTY,
    SYMBOL,
    KiteSimAddress,
    LiveRig,
    make_live_rig,
)
from tests.integration.kitesim_prices import address_of, priced_kitesim
from tests.kitesim.rest import KiteRestSim
from tests.trading_rig import T0
from Webapp.execution.commands import CommandKind
from Webapp.execution.trading_view import TradingState
from Webapp.states import ExitReason, GttIntentState, LegState

STOP_TRIGGER = 975.0  # P1 bought at 1000.00: the GTT is [975.00, 1050.00], its stop LIMIT 970.10
FIRE = 974.0  # through the stop trigger
REASON = (
    "Your order price is lower than the current lower circuit limit of 972.00. "
    "Place an order within the daily range."
)


@pytest.fixture
def sim() -> Iterator[KiteRestSim]:
    """kitesim with the switch LiveRig moves prices with."""
    with priced_kitesim() as sim:
        yield sim


@pytest.fixture
def address(sim) -> KiteSimAddress:
    return address_of(sim)


@pytest.fixture
def rig(sim, address, tmp_path: Path) -> LiveRig:
    """P1 of INFY bought at kitesim and protected there by its two-leg GTT."""
    rig = make_live_rig(f"sqlite:///{tmp_path / 'app.db'}", address)
    rig.start()
    rig.tick(SYMBOL, BUY_AT)
    rig.buy(SYMBOL, QTY, BUY_AT)
    [leg] = rig.rows(SYMBOL)
    assert (leg.status, leg.qty) == (LegState.OPEN, QTY)
    [gtt] = sim.gtt_book
    assert (gtt["status"], gtt["type"]) == ("active", "two-leg")
    assert gtt["condition"]["trigger_values"] == [STOP_TRIGGER, 1050.0]
    return rig


def sells_at_kite(sim: KiteRestSim) -> list[dict]:
    """Every SELL in kitesim's order book (a failed GTT order never enters it)."""
    return [o for o in sim.order_book if o["transaction_type"] == "SELL"]


def fired_with_failed_order(sim: KiteRestSim) -> dict:
    [gtt] = sim.gtt_book
    assert gtt["status"] == "triggered"
    order_result = gtt["orders"][0]["result"]["order_result"]
    assert order_result == {"status": "failed", "order_id": "", "rejection_reason": REASON}
    return gtt


def wait_until(rig: LiveRig, done: Callable[[], bool], seconds: int) -> int:
    """Timer ticks (and order polls), one simulated second each, until `done`; the seconds."""
    for elapsed in range(seconds + 1):
        if done():
            return elapsed
        rig.wait(1)
    raise AssertionError(f"not done after {seconds} simulated seconds")


def assert_sold_once(rig: LiveRig, sim: KiteRestSim) -> dict:
    """One sell of ours for the leg's quantity at kitesim, the leg closed by it, the reason
    shown; returns that sell (kitesim's order)."""
    [sell] = sells_at_kite(sim)
    assert sell["tag"].startswith("X")
    assert (sell["quantity"], sell["status"]) == (QTY, "COMPLETE")
    [leg] = rig.rows(SYMBOL)
    assert (leg.status, leg.exit_reason, leg.exit_price) == (
        LegState.CLOSED,
        ExitReason.STOP_GTT,
        sell["average_price"],
    )
    assert leg.exit_tag == sell["tag"]
    [gtt_row] = rig.gtts(SYMBOL)
    assert gtt_row.state == GttIntentState.DELETED
    assert REASON in (gtt_row.status_message or "")
    shown = [e.message for e in rig.trader.build_view().errors]
    assert any(REASON in message and "selling at market" in message for message in shown), shown
    return sell


def assert_still_sold_once_after(rig: LiveRig, sim: KiteRestSim, price: float) -> None:
    """A minute and more of prices and timer ticks later: no second sell at the exchange."""
    for _ in range(3):
        rig.tick(SYMBOL, price)
        rig.wait(30)
    assert len(sells_at_kite(sim)) == 1
    assert [leg.status for leg in rig.rows(SYMBOL)] == [LegState.CLOSED]
    assert rig.trader.state is TradingState.RUNNING, rig.trader.detail
    assert not rig.trader.ladders


# --- a running engine -------------------------------------------------------------------------


def test_a_fired_gtt_whose_sell_kite_refused_is_shown_and_sold_at_market_once(rig, sim):
    """The engine sees the price that fires the GTT: its own stop (975.00) is reached too,
    so it deletes the GTT first; Kite answers the GTT is not active, the engine reads it,
    finds the failed order and sells the leg at market."""
    sim.fail_next("gtt.trigger", "failed", message=REASON)

    rig.tick(SYMBOL, FIRE)

    fired_with_failed_order(sim)
    sell = assert_sold_once(rig, sim)
    assert (sell["order_type"], sell["average_price"]) == ("MARKET", FIRE)  # at kitesim's LTP
    assert_still_sold_once_after(rig, sim, FIRE)


def test_a_gtt_fired_on_a_dip_the_feed_missed_is_found_by_the_gtt_listing(rig, sim):
    """Kite trades through the trigger and back while the engine sees only 980 (above its
    stop): nothing tells the engine but its GTT listing, every 30 s; it sells at market then."""
    sim.fail_next("gtt.trigger", "failed", message=REASON)

    rig.market(SYMBOL, FIRE)  # at the exchange only: the GTT fires, its order fails
    fired_with_failed_order(sim)
    rig.tick(SYMBOL, 980.0)
    assert sells_at_kite(sim) == []  # the engine does not know yet

    wait_until(rig, lambda: bool(sells_at_kite(sim)), seconds=30)  # one listing at most

    rig.poll()  # the sell's fill, from kitesim's order book
    sell = assert_sold_once(rig, sim)
    assert (sell["order_type"], sell["average_price"]) == ("MARKET", 980.0)
    assert_still_sold_once_after(rig, sim, 980.0)


# --- reconciliation at start ------------------------------------------------------------------


def fire_while_down_then_start(
    rig: LiveRig, sim: KiteRestSim, address: KiteSimAddress, how: str
) -> LiveRig:
    """STOP; Kite fires the GTT and cannot place its sell; then the engine is back (START on
    the stopped one, or a new process on the same app DB) and trades for a few seconds."""
    stopped = rig.command(CommandKind.STOP, "alice").wait(0)
    assert stopped is not None and stopped.ok
    sim.fail_next("gtt.trigger", "failed", message=REASON)
    sim.set_price(SYMBOL, FIRE)
    fired_with_failed_order(sim)
    if how == "restarted":  # the first process is gone
        rig = make_live_rig(rig.db_url, address, start=T0 + timedelta(minutes=10))
    rig.tick(SYMBOL, FIRE)  # prices flow before START (the feed runs while trading is off)
    assert sells_at_kite(sim) == []

    started = rig.command(CommandKind.START, "alice").wait(0)
    assert started is not None and started.ok, started
    assert rig.trader.state is TradingState.RUNNING, rig.trader.detail
    rig.tick(SYMBOL, FIRE)  # and after it, before the first timer tick
    wait_until(rig, lambda: bool(sells_at_kite(sim)), seconds=5)
    rig.poll()  # the sell's fill, from kitesim's order book
    return rig


DOWN = pytest.mark.parametrize("how", ["stopped", "restarted"])


@DOWN
def test_a_gtt_whose_sell_kite_refused_while_the_engine_was_down_is_sold_once_on_start(
    rig, sim, address, how
):
    rig = fire_while_down_then_start(rig, sim, address, how)

    assert_sold_once(rig, sim)
    assert_still_sold_once_after(rig, sim, FIRE)


@DOWN
def test_a_gtt_whose_sell_kite_refused_while_the_engine_was_down_is_sold_at_market_on_start(
    rig, sim, address, how
):
    rig = fire_while_down_then_start(rig, sim, address, how)

    [sell] = sells_at_kite(sim)
    assert sell["order_type"] == "MARKET", sell
