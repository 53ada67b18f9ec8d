"""The threaded engine under a 9,000 ticks/s feed: 50 symbols × 3 open legs, paper broker.

Run from the repository root:  .venv/bin/python bench/engine_load.py [--rate R] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ladder_rig import (  # noqa: E402
    ACCOUNT,
    STARTING_CASH,
    open_ladders,
    price_walk,
)

from Webapp.event_bus import EventBus  # noqa: E402
from Webapp.execution.builders import Driver, build_trader, paper_account  # noqa: E402
from Webapp.execution.clock import WallClock  # noqa: E402
from Webapp.execution.commands import Command, CommandKind  # noqa: E402
from Webapp.execution.engine import Engine  # noqa: E402
from Webapp.execution.gateway import OrderGateway  # noqa: E402
from Webapp.execution.trading_view import TradingState  # noqa: E402
from Webapp.market.ltp_store import LTPStore, Quote  # noqa: E402

# The engine has kept up when the feed's last price reaches the trader this soon after
# it entered the store, and 99% of the prices it took up had waited no longer either.
KEPT_UP_S = 1.0


class PriceProbe:
    """The engine's `price_time` hook: called on the engine thread for every price it hands
    to the trader, just before `Trader.on_price`. It records how long the price waited
    since it entered the LTPStore and returns None (the trader's own clock), as the
    runtime's paper mode does."""

    def __init__(self) -> None:
        self.waits_s: list[float] = []
        self.since: datetime | None = None  # record prices that entered the store from then
        self._lock = threading.Lock()
        self._seen: dict[str, Quote] = {}
        self._wanted: Quote | None = None
        self.reached = threading.Event()
        self.reached_at: datetime | None = None

    def __call__(self, quote: Quote) -> None:
        now = datetime.now(UTC)
        since = self.since
        if since is not None and quote.received_at >= since:
            self.waits_s.append((now - quote.received_at).total_seconds())
        with self._lock:
            self._seen[quote.symbol] = quote
            if quote is self._wanted:
                self.reached_at = now
                self.reached.set()
        return None

    def wait_for(self, quote: Quote, timeout: float) -> bool:
        """True once the engine has handed `quote` to the trader (within `timeout`)."""
        with self._lock:
            self._wanted = quote
            if self._seen.get(quote.symbol) is quote:
                self.reached_at = datetime.now(UTC)
                self.reached.set()
        return self.reached.wait(timeout)


class Feeder(threading.Thread):
    """Writes the ticks into the LTPStore at `rate` a second, in batches every `batch_s`:
    each batch carries every tick due by the wall clock, all stamped with its time."""

    def __init__(self, store: LTPStore, ticks: list, rate: float, batch_s: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.store, self.ticks, self.rate, self.batch_s = store, ticks, rate, batch_s
        self.started_at = self.finished_at = 0.0
        self.last_quote: Quote | None = None
        self.batches = 0
        self.cpu_s = 0.0  # this thread's own CPU time while feeding

    def run(self) -> None:
        update, ticks, total = self.store.update, self.ticks, len(self.ticks)
        sent = 0
        cpu_started = time.thread_time()
        self.started_at = started = time.perf_counter()
        while sent < total:
            elapsed = time.perf_counter() - started
            due = min(total, int(elapsed * self.rate) + 1)
            if due > sent:
                now = datetime.now(UTC)
                second = now.replace(microsecond=0)  # Kite stamps ticks to the second
                for symbol, ltp in ticks[sent:due]:
                    quote = update(symbol, ltp, 0, second, now)
                sent = due
                self.last_quote = quote
                self.batches += 1
            pause = self.batch_s - (time.perf_counter() - started - elapsed)
            if pause > 0:
                time.sleep(pause)
        self.finished_at = time.perf_counter()
        self.cpu_s = time.thread_time() - cpu_started


@dataclass
class Result:
    name: str
    ticks: int = 0
    feed_s: float = 0.0
    batches: int = 0
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # per thread, and "process"
    events: int = 0
    depths: list[int] = field(default_factory=list)
    max_queue_depth: int = 0
    waits_s: list[float] = field(default_factory=list)
    drain_s: float | None = None  # the last tick's wait; None: it never reached the trader
    calls: Counter[str] = field(default_factory=Counter)
    legs_before: int = 0
    legs_after: int = 0
    state: str = ""
    errors: int = 0  # errors the trader reported (the dashboard's list)

    @property
    def kept_up(self) -> bool:
        return (
            self.drain_s is not None
            and self.drain_s <= KEPT_UP_S
            and pct(self.waits_s, 99) <= KEPT_UP_S
            and self.state == TradingState.RUNNING.value
            and not self.errors
        )


def thread_named(name: str) -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == name)


def cpu_clock(thread: threading.Thread) -> int:
    """The CPU-time clock of another thread of this process (Linux: CLOCK_THREAD_CPUTIME)."""
    assert thread.ident is not None
    return time.pthread_getcpuclockid(thread.ident)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, int(-(-len(ordered) * p // 100))) - 1]


def run(folder: Path, name: str, with_exchange: bool, args) -> Result:
    """Open the ladders, start the threaded engine on them, feed it, and measure."""
    # Opened 20 minutes ago in simulated time, so that every GTT may be modified now.
    opened_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    rig = open_ladders(folder, symbols=args.symbols, start=opened_at)
    store, sessions, params = rig.store, rig.sessions, rig.params
    db_engine, symbols = rig.db_engine, list(rig.prices)
    result = Result(name, legs_before=rig.open_legs())
    del rig  # its PaperBroker and Trader: one of each per account at a time

    # The runtime's paper wiring (Webapp/execution/runtime.py), on the same app DB and LTPStore.
    bus, clock = EventBus(), WallClock()
    broker = paper_account(
        sessions, params, clock=clock.now, store=store, account=ACCOUNT, starting_cash=STARTING_CASH
    )
    engine = Engine(store, bus)
    gateway = OrderGateway(broker, engine.submit, clock=clock)

    def submit(request, urgent: bool = False) -> None:  # counts what the prices cause
        result.calls[type(request).__name__] += 1
        gateway.send(request, urgent)

    # Without the exchange side the trader is wired as live mode is (no step 1 on prices).
    trader = build_trader(
        Driver.PAPER if with_exchange else Driver.LIVE,
        broker=broker,
        submit=submit,
        sessions=sessions,
        params=params,
        clock=clock,
        store=store,
        universe=symbols,
        account=ACCOUNT,
    )
    broker.on_order_update(engine.submit)
    probe = PriceProbe()
    engine.attach(trader, gateway, autostart=False, price_time=probe)
    engine.start()
    start = Command(CommandKind.START, "bench", note="engine_load")
    engine.command(start)
    outcome = start.wait(120)
    if outcome is None or not outcome.ok:
        engine.stop()
        raise SystemExit(f"the engine did not start trading: {outcome}")
    result.calls.clear()  # not the reconciliation's reads
    engine_thread, gateway_thread = thread_named("engine"), thread_named("order-gateway")

    prices = {symbol: quote.ltp for symbol, quote in store.snapshot().items()}
    ticks = price_walk(
        prices,
        int(args.rate * args.seconds),
        seed=args.seed,
        drift_pct_per_hour=args.drift,
        sigma_bps=args.sigma_bps,
    )
    feeder = Feeder(store, ticks, args.rate, args.batch_ms / 1000)
    clocks = {"engine": cpu_clock(engine_thread), "order gateway": cpu_clock(gateway_thread)}
    before = engine.status()
    cpu0 = {thread: time.clock_gettime(clock_id) for thread, clock_id in clocks.items()}
    process0, wall0 = time.process_time(), time.perf_counter()
    probe.since = datetime.now(UTC)
    feeder.start()
    sample_s = args.sample_ms / 1000
    while feeder.is_alive():
        result.depths.append(engine.status().queue_depth)
        feeder.join(sample_s)
    result.wall_s = time.perf_counter() - wall0
    result.cpu_s = {
        thread: time.clock_gettime(clock_id) - cpu0[thread] for thread, clock_id in clocks.items()
    }
    result.cpu_s["feeder"] = feeder.cpu_s
    result.cpu_s["process"] = time.process_time() - process0
    last = feeder.last_quote
    assert last is not None
    if probe.wait_for(last, 60) and probe.reached_at is not None:
        result.drain_s = (probe.reached_at - last.received_at).total_seconds()
    after = engine.status()
    probe.since = None
    engine.stop()
    db_engine.dispose()

    result.ticks, result.batches = len(ticks), feeder.batches
    result.feed_s = feeder.finished_at - feeder.started_at
    result.events = after.events_handled - before.events_handled
    result.max_queue_depth = after.max_queue_depth
    result.waits_s = probe.waits_s
    view = engine.view()
    result.state = view.state.value
    result.errors = len(view.errors)
    result.legs_after = sum(
        1
        for ladder in view.ladders
        for leg in ladder.legs
        if leg.state == "open" and leg.gtt_trigger is not None
    )
    return result


def figures(r: Result) -> list[str]:
    wall = r.wall_s
    handled = len(r.waits_s)

    def cpu(thread: str) -> str:
        return f"{r.cpu_s[thread]:.2f} s ({r.cpu_s[thread] / wall:.0%})"

    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:,.1f}"

    return [
        f"{r.ticks / r.feed_s:,.0f} ({r.ticks:,} in {r.feed_s:.2f} s, {r.batches:,} batches)",
        f"{handled:,} ({handled / wall:,.0f}/s; {handled / r.ticks:.1%} of the ticks)",
        f"{r.events:,}",
        cpu("engine"),
        cpu("order gateway"),
        cpu("feeder"),
        cpu("process"),
        f"{max(r.depths, default=0)} / {pct(r.depths, 99):.0f} ({len(r.depths)} samples)",
        f"{r.max_queue_depth}",
        f"{ms(pct(r.waits_s, 50))} / {ms(pct(r.waits_s, 99))} / {ms(max(r.waits_s, default=0))}",
        "never" if r.drain_s is None else ms(r.drain_s),
        ", ".join(f"{k} {v:,}" for k, v in sorted(r.calls.items())) or "none",
        f"{r.legs_before} → {r.legs_after}, trader {r.state}, {r.errors} errors",
        "yes" if r.kept_up else "NO",
    ]


LABELS = [
    "feed, ticks/s",
    "prices handed to the trader",
    "engine events handled",
    "engine thread CPU (share of the wall time)",
    "order-gateway thread CPU",
    "feeder thread CPU",
    "process CPU (all threads)",
    "engine queue depth, every 100 ms: max / p99",
    "Engine.max_queue_depth",
    "tick → trader wait, ms: p50 / p99 / max",
    "last tick → trader, ms",
    "broker calls the prices caused",
    "open legs with an active GTT",
    f"kept up (last tick and p99 wait ≤ {KEPT_UP_S:g} s, no error)",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=9_000, help="ticks a second")
    parser.add_argument("--seconds", type=float, default=20, help="how long the feed runs")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--batch-ms", type=float, default=10, help="feeder batch interval")
    parser.add_argument("--sample-ms", type=float, default=100, help="queue-depth sampling")
    parser.add_argument("--drift", type=float, default=1.0, help="%% per 3,600 rounds")
    parser.add_argument("--sigma-bps", type=float, default=1.5, help="sd of one round's move")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--paper-only", action="store_true", help="skip the run without the exchange side"
    )
    args = parser.parse_args()
    load = os.getloadavg()[0]

    results = []
    with tempfile.TemporaryDirectory(prefix="ladder-bench-") as folder:
        for name, with_exchange in (
            ("paper (runtime wiring)", True),
            ("no exchange side", False),
        ):
            if args.paper_only and not with_exchange:
                continue
            path = Path(folder) / name.split()[0]
            path.mkdir()
            results.append(run(path, name, with_exchange, args))

    print(
        f"Threaded Engine + OrderGateway + PaperBroker, {args.symbols} symbols × 3 OPEN legs "
        f"with active GTTs, SQLite app DB; feeder thread at {args.rate:,.0f} ticks/s for "
        f"{args.seconds:g} s\n"
    )
    print("| figure | " + " | ".join(r.name for r in results) + " |")
    print("|---|" + "---|" * len(results))
    columns = [figures(r) for r in results]
    for index, label in enumerate(LABELS):
        print(f"| {label} | " + " | ".join(column[index] for column in columns) + " |")
    print(
        f"\nCPU from each thread's own clock (time.pthread_getcpuclockid) over the feed's "
        f"{results[0].wall_s:.1f} s; process CPU from time.process_time (100% = one core of "
        f"{os.cpu_count()}). Price walk {args.sigma_bps} bps per round of {args.symbols} "
        f"ticks, drift {args.drift}% per 3,600 rounds, seed {args.seed}. Python "
        f"{sys.version.split()[0]}; load average {load:.2f} at start."
    )
    if load > 0.5:
        print("the machine was busy: rerun on an idle machine for docs/PERFORMANCE.md")
    return 0 if all(r.kept_up for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
