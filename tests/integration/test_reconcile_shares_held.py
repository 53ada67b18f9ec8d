"""Start-up reconciliation counts the shares Kite holds as STRATEGY.md says (live, kitesim).

Shares held = holdings quantity − `used_quantity` (sold from holdings today) + today's
CNC position on NSE; other products and exchanges do not count. The engine (the live
rig of the crash tests: a KiteBroker on kitesim) buys P1 of INFY and is stopped; then
the account changes by hand at the exchange and START reconciles: fewer shares than
the legs hold stops the engine (FAILED, the reason on screen), enough lets it run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.crash_child import BUY_AT, QTY, SYMBOL, make_live_rig
from tests.integration.kitesim_prices import address_of, priced_kitesim
from tests.kitesim.rest import KiteRestSim
from Webapp.execution.commands import CommandKind
from Webapp.execution.trading_view import TradingState
from Webapp.states import LegState

SHORT = f"{SYMBOL}: legs P1 hold {QTY} shares but the broker shows"


@pytest.fixture
def sim() -> Iterator[KiteRestSim]:
    """kitesim with the switch LiveRig moves prices with."""
    with priced_kitesim() as sim:
        sim.set_price(f"BSE:{SYMBOL}", BUY_AT)
        yield sim


@pytest.fixture
def rig(sim, tmp_path: Path):
    """P1 of INFY bought and protected by a GTT, then the engine stopped."""
    address = address_of(sim)
    rig = make_live_rig(f"sqlite:///{tmp_path / 'app.db'}", address)
    rig.start()
    rig.tick(SYMBOL, BUY_AT)
    rig.buy(SYMBOL, QTY, BUY_AT)
    [leg] = rig.rows(SYMBOL)
    assert (leg.status, leg.qty) == (LegState.OPEN, QTY)
    assert [g["status"] for g in sim.gtt_book] == ["active"]
    stop = rig.command(CommandKind.STOP, "alice").wait(0)
    assert stop is not None and stop.ok
    return rig


def by_hand(sim: KiteRestSim, side: str, quantity: int, product="CNC", exchange="NSE") -> None:
    """An order placed outside the app (Kite web, say), filled at once."""
    kite = sim.client()
    order_id = kite.place_order("regular", exchange, SYMBOL, side, quantity, product, "MARKET")
    assert kite.order_history(order_id)[-1]["status"] == "COMPLETE"


def start(rig) -> tuple[TradingState, str]:
    result = rig.command(CommandKind.START, "alice").wait(0)
    assert result is not None
    return rig.trader.state, rig.trader.detail


def test_shares_sold_from_holdings_today_no_longer_count(rig, sim):
    sim.new_day()  # P1's shares are holdings now
    by_hand(sim, "SELL", QTY)  # Kite: used_quantity 3, and a CNC position of -3

    state, detail = start(rig)

    assert state is TradingState.FAILED
    assert f"{SHORT} 0" in detail


@pytest.mark.parametrize(
    ("product", "exchange"), [("MIS", "NSE"), ("CNC", "BSE")], ids=["MIS", "BSE"]
)
def test_a_position_of_another_product_or_exchange_does_not_count(rig, sim, product, exchange):
    by_hand(sim, "SELL", QTY)  # P1's delivery shares go
    by_hand(sim, "BUY", QTY, product=product, exchange=exchange)

    state, detail = start(rig)

    assert state is TradingState.FAILED
    assert f"{SHORT} 0" in detail


def test_holdings_of_earlier_days_less_what_was_sold_today_still_cover_the_legs(rig, sim):
    sim.add_holding(SYMBOL, 5, 900.0)  # shares held outside the strategy
    sim.new_day()  # 8 held: P1's 3 and the 5
    by_hand(sim, "SELL", 5)

    state, detail = start(rig)

    assert state is TradingState.RUNNING, detail
    assert detail == "reconciled with the broker: 1 ladders, 1 live legs"
