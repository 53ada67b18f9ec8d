"""Shared set-up of the engine benchmarks: a paper account holding 50 ladders of three OPEN legs.

Not a benchmark itself (bench/run.py skips files starting with "_"). The ladders are
opened by a real Trader through the inline driver, as the strategy would open them: P1
bought, then the price moved up until P2 and P3 were added, every leg filled by the
PaperBroker and protected by an active GTT, all written to a migrated SQLite app DB.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _engine_events import EventRecorder  # noqa: E402

from Webapp.broker.base import TICK_SIZE  # noqa: E402
from Webapp.broker.paper import PaperBroker  # noqa: E402
from Webapp.config.params import Params, load_params  # noqa: E402
from Webapp.execution.builders import Driver, inline_engine, paper_account  # noqa: E402
from Webapp.execution.clock import SimulatedClock  # noqa: E402
from Webapp.execution.commands import Command, CommandKind  # noqa: E402
from Webapp.execution.inline import InlineDriver, InlineGateway  # noqa: E402
from Webapp.execution.trader import Trader  # noqa: E402
from Webapp.market.ltp_store import LTPStore  # noqa: E402
from Webapp.market.universe import load_universe  # noqa: E402
from Webapp.states import LegState  # noqa: E402
from Webapp.storage import migrate  # noqa: E402
from Webapp.storage.db import make_engine, make_session_factory  # noqa: E402
from Webapp.strategy.actions import Buy  # noqa: E402
from Webapp.strategy.limits import leg_quantity  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "paper"
STARTING_CASH = 20_000_000.0
LEGS = 3
# Tuesday 24 Nov 2026, 10:00 IST: inside the session and the entry window.
SESSION_T0 = datetime(2026, 11, 24, 4, 30, tzinfo=UTC)


def bench_params() -> Params:
    """The shipped parameters with the account limits widened so that 50 x 3 legs fit.

    Every rule the engine applies on a price (stops, GTT step and interval, triggers)
    keeps its shipped value; only the caps on the whole account change: 150 legs of
    up to ₹20,000 each (so that one share of every NIFTY 50 stock, MARUTI included,
    makes a leg) need more than 90 positions and ₹240,000.
    """
    shipped = load_params(REPO_ROOT / "support_files" / "param.yaml")
    return shipped.model_copy(
        update={
            "capital_per_position": 20_000,
            "max_positions": 200,
            "total_capital": 5_000_000,
            "max_order_value": 50_000,
            "max_daily_loss": 100_000,
        }
    )


def universe_prices(count: int = 50) -> dict[str, float]:
    """The first `count` NIFTY 50 members and their reference prices."""
    members = load_universe("nifty50")[:count]
    return {m.symbol: m.ref_price for m in members}


def on_tick(price: float) -> float:
    return round(round(price / TICK_SIZE) * TICK_SIZE, 2)


def price_walk(
    start: dict[str, float],
    ticks: int,
    *,
    seed: int,
    drift_pct_per_hour: float,
    sigma_bps: float,
) -> list[tuple[str, float]]:
    """`ticks` (symbol, ltp): rounds in which every symbol trades once, in a shuffled order.

    A round stands for one second. Each symbol's price takes a seeded Gaussian step of
    `sigma_bps` basis points per round (1.5 bps a second is about 2.2% a session) with a
    drift of `drift_pct_per_hour`, rounded to the 0.05 tick: small moves, mostly up, so
    stops trail and GTTs come due for a modify now and then, as in a trending market.
    """
    rng = random.Random(seed)
    mu = (1 + drift_pct_per_hour / 100) ** (1 / 3600) - 1
    sigma = sigma_bps / 10_000
    exact = dict(start)
    order = list(start)
    out: list[tuple[str, float]] = []
    while len(out) < ticks:
        rng.shuffle(order)
        for symbol in order:
            exact[symbol] *= 1 + rng.gauss(mu, sigma)
            out.append((symbol, on_tick(exact[symbol])))
            if len(out) == ticks:
                break
    return out


@dataclass
class LadderRig:
    """A running single-threaded trader whose account holds one full ladder per symbol."""

    db_url: str
    db_engine: object  # the app DB's SQLAlchemy engine: dispose() when done
    sessions: object
    params: Params
    store: LTPStore
    clock: SimulatedClock
    broker: PaperBroker
    gateway: InlineGateway
    driver: InlineDriver
    trader: Trader
    prices: dict[str, float]  # the last price of each symbol

    def open_legs(self) -> int:
        return sum(
            1
            for ls in self.trader.ladders.values()
            for leg in ls.ladder.legs
            if leg.state is LegState.OPEN and ls.work[leg.position_number].gtt_id is not None
        )


def open_ladders(
    folder: Path,
    *,
    symbols: int = 50,
    start: datetime = SESSION_T0,
    with_exchange: bool = True,
    recorder: EventRecorder | None = None,
) -> LadderRig:
    """A migrated SQLite app DB in `folder` and a Trader holding `symbols` ladders of 3 OPEN legs.

    `with_exchange`: the trader runs the PaperBroker's exchange side before its rules on
    every price (`exchange=broker.on_price`, as the runtime does in paper mode), or not.
    Simulated time starts at `start` and moves one second per round of prices.
    `recorder`: times the trader's timer, results, order updates and commands from the
    start of the set-up on (bench/_engine_events.py).
    """
    url = f"sqlite:///{folder / 'app.db'}"
    migrate.upgrade(url)
    db_engine = make_engine(url)
    sessions = make_session_factory(db_engine)
    params = bench_params()
    prices = universe_prices(symbols)
    names = list(prices)
    clock = SimulatedClock(start)
    store = LTPStore()
    broker = paper_account(
        sessions, params, clock=clock.now, store=store, account=ACCOUNT, starting_cash=STARTING_CASH
    )
    # Without the exchange side the trader is wired as live mode is (no step 1 on prices).
    engine = inline_engine(
        Driver.PAPER if with_exchange else Driver.LIVE,
        broker=broker,
        sessions=sessions,
        params=params,
        clock=clock,
        store=store,
        universe=names,
        account=ACCOUNT,
    )
    trader, driver, gateway = engine.trader, engine.driver, engine.gateway
    if recorder is not None:
        recorder.install(db_engine)
        recorder.wrap_trader(trader)
    rig = LadderRig(
        url, db_engine, sessions, params, store, clock, broker, gateway, driver, trader, prices
    )

    def tick_round(symbols_now: list[str]) -> None:
        clock.advance(timedelta(seconds=1))
        now = clock.now()
        for symbol in symbols_now:
            store.update(symbol, prices[symbol], exchange_time=now, received_at=now)
            driver.price(symbol, prices[symbol], now)

    tick_round(names)
    start_cmd = Command(CommandKind.START, "bench", note="bench set-up")
    driver.command(start_cmd)
    result = start_cmd.wait(0)
    if result is None or not result.ok:
        raise SystemExit(f"the trader did not start: {result}")
    for symbol in names:  # P1, as a scan would open it
        qty = leg_quantity(prices[symbol], params)
        trader.buy(Buy(symbol, 1, qty, prices[symbol]), None)
        driver.settle()
    # Then up 0.1% a second until the rules have added P2 and P3 and their GTTs are active.
    for _ in range(60):
        wanting = [s for s in names if _open_legs(trader, s) < LEGS]
        if not wanting:
            break
        for symbol in wanting:
            prices[symbol] = on_tick(prices[symbol] * 1.001 + TICK_SIZE)
        tick_round(wanting)
    missing = {s: _open_legs(trader, s) for s in names if _open_legs(trader, s) < LEGS}
    if missing or trader.errors:
        raise SystemExit(
            f"set-up failed: open legs {missing}, errors {[e.message for e in trader.errors]}"
        )
    # The rise above moved the P1 and P2 stops past their GTTs' triggers: once the GTTs
    # may be modified (min_interval_s after placement) one more round of the same prices
    # trails them, so that a benchmark starts from a steady state, not from that burst.
    clock.advance(timedelta(seconds=params.gtt.min_interval_s))
    tick_round(names)
    driver.timer(clock.now())  # write the raised stops
    return rig


def _open_legs(trader: Trader, symbol: str) -> int:
    ls = trader.ladders.get(symbol)
    if ls is None:
        return 0
    return sum(
        1
        for leg in ls.ladder.legs
        if leg.state is LegState.OPEN and ls.work[leg.position_number].gtt_id is not None
    )
