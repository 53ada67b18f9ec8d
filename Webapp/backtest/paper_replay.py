"""Replay candles through the paper engine on a simulated clock and return every leg it traded.

The whole engine runs in one thread, deterministically: a PaperBroker (the paper fill
model, its state in the app DB under account "backtest:<run id>"), the Trader with
its write-ahead steps, an InlineGateway/InlineDriver instead of the gateway and engine
threads, and a SimulatedClock that only the replay moves. Each candle is played along
its price path (STRATEGY.md "Backtest fills": open → high → low → close, or open →
low → high → close for a falling candle), all symbols merged in market-time order by
the replay feed's own helper, so a replay feed in paper mode and this runner see the
same ticks.

For each tick: the clock moves to its time, the LTPStore gets the price stamped with
it, and the driver hands the price to the trader (broker side first). Once every
symbol's tick at one time has been delivered, the trader's timer runs if at least a
second of simulated time passed since its last run: scans, exit timeouts and retries
happen on simulated time. Scans therefore run at tick times only; between two ticks
every price would be older than `stale_after_s` and the scan would skip it.

The signal-timeframe candles with EMAs must already be in `ohlcv` (backtest.history);
the scan reads only candles closed before its time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from Webapp.config.params import Params
from Webapp.execution.builders import Driver, inline_engine, paper_account
from Webapp.execution.clock import SimulatedClock
from Webapp.execution.commands import Command, CommandKind
from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Candle
from Webapp.market.feeds.replay import ReplayTick, merged_ticks
from Webapp.market.ltp_store import LTPStore
from Webapp.market.ohlcv import OHLCVStore
from Webapp.storage.trading_models import Ladder, Trade

TIMER_EVERY = timedelta(seconds=1)
TICK_SIZE = 0.05


class ReplayLeg(NamedTuple):
    """One leg (a trades row) as the replay left it; exit fields None while it is open."""

    symbol: str
    position_number: int
    qty: int
    entry_time: datetime | None
    entry_price: float | None
    exit_time: datetime | None
    exit_price: float | None
    exit_reason: str | None
    pnl: float | None
    pnl_net: float | None
    status: str


class PaperReplay:
    """One backtest run: the engine's pieces, wired like tests/trading_rig.py's paper rig.

    `play(candles)` starts the trader (START, reconciled against the fresh account) and
    plays the candles; `legs()` reads the trades back. The pieces stay reachable
    (`trader`, `broker`, `gateway`, `clock`, `store`) for reports and tests.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        params: Params,
        ohlcv: OHLCVStore | None,
        *,
        symbols: Sequence[str],
        start: datetime,
        run_id: str = "replay",
        starting_cash: float = 1_000_000.0,
        calendar: MarketCalendar | None = None,
        tick_size: float | None = TICK_SIZE,
    ) -> None:
        self.account = f"backtest:{run_id}"
        self.sessions = sessions
        self.tick_size = tick_size
        self.calendar = calendar or MarketCalendar.nse()
        self.clock = SimulatedClock(start)
        self.store = LTPStore()
        self.broker = paper_account(
            sessions,
            params,
            clock=self.clock.now,
            store=self.store,
            account=self.account,
            starting_cash=starting_cash,
        )
        engine = inline_engine(
            Driver.BACKTEST,
            broker=self.broker,
            sessions=sessions,
            params=params,
            clock=self.clock,
            store=self.store,
            universe=symbols,
            account=self.account,
            ohlcv=ohlcv,
            calendar=self.calendar,
        )
        self.trader, self.driver, self.gateway = engine.trader, engine.driver, engine.gateway
        self.ticks = 0
        self.timers = 0
        self._last_timer: datetime | None = None

    def start(self) -> None:
        """START, as the engine sends it: reconcile with the broker, then trade."""
        command = Command(CommandKind.START, "backtest")
        self.driver.command(command)
        result = command.wait(0)
        if result is None or not result.ok:
            raise RuntimeError(f"the trader did not start: {result} ({self.trader.detail})")

    def play(self, candles: Iterable[Candle]) -> None:
        """START, then every candle's ticks in market-time order (see the module doc)."""
        self.start()
        ticks = merged_ticks(candles, steps_per_leg=1, tick_size=self.tick_size)
        for at, group in groupby(ticks, key=lambda tick: tick.at):
            self.clock.set(at)
            for tick in group:
                self._deliver(tick)
            if self._last_timer is None or at - self._last_timer >= TIMER_EVERY:
                self._last_timer = at
                self.timers += 1
                self.driver.timer(at)

    def _deliver(self, tick: ReplayTick) -> None:
        self.ticks += 1
        self.store.update(tick.symbol, tick.price, exchange_time=tick.at, received_at=tick.at)
        self.driver.price(tick.symbol, tick.price, tick.at)

    def legs(self) -> list[ReplayLeg]:
        """Every trades row of this run's account, by (entry time, symbol, position)."""
        stmt = (
            select(Trade)
            .join(Ladder, Trade.ladder_id == Ladder.id)
            .where(Ladder.account == self.account)
        )
        with self.sessions() as session:
            rows = list(session.scalars(stmt))
        legs = [
            ReplayLeg(
                row.symbol,
                row.position_number,
                row.qty,
                row.entry_time,
                row.entry_price,
                row.exit_time,
                row.exit_price,
                row.exit_reason,
                row.pnl,
                row.pnl_net,
                row.status,
            )
            for row in rows
        ]
        never = datetime.max.replace(tzinfo=UTC)  # legs never bought sort last
        legs.sort(key=lambda g: (g.entry_time or never, g.symbol, g.position_number))
        return legs


def replay_candles(
    candles: Sequence[Candle],
    sessions: sessionmaker[Session],
    params: Params,
    ohlcv: OHLCVStore | None,
    *,
    run_id: str = "replay",
    starting_cash: float = 1_000_000.0,
    calendar: MarketCalendar | None = None,
) -> list[ReplayLeg]:
    """Play `candles` (any symbols, one intraday timeframe) through a fresh paper account and
    return its legs. The universe is the candles' symbols; the clock starts at the first."""
    if not candles:
        raise ValueError("nothing to replay: no candles")
    replay = PaperReplay(
        sessions,
        params,
        ohlcv,
        symbols=sorted({c.symbol for c in candles}),
        start=min(c.ts for c in candles),
        run_id=run_id,
        starting_cash=starting_cash,
        calendar=calendar,
    )
    replay.play(candles)
    return replay.legs()


def canonical(legs: Iterable[ReplayLeg]) -> str:
    """The legs as JSON: prices and P&L rounded to 2 decimals, times ISO (UTC)."""

    def money(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    def when(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat()

    rows = [
        [
            g.symbol,
            g.position_number,
            g.qty,
            when(g.entry_time),
            money(g.entry_price),
            when(g.exit_time),
            money(g.exit_price),
            g.exit_reason,
            money(g.pnl),
            money(g.pnl_net),
            g.status,
        ]
        for g in legs
    ]
    return json.dumps(rows, separators=(",", ":"))


def fingerprint(legs: Iterable[ReplayLeg]) -> str:
    """sha256 of canonical(legs): equal for two runs that traded exactly alike."""
    return hashlib.sha256(canonical(legs).encode()).hexdigest()
