"""Tick pipeline throughput: LTPStore.update → CandleAgg (1m/5m/15m/1d, EMAs) + a no-op subscriber.

Run from the repository root:  .venv/bin/python bench/tick_pipeline.py [--ticks N] [--runs R]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from Webapp.market.calendar import MarketCalendar  # noqa: E402
from Webapp.market.candles import CandleAgg  # noqa: E402
from Webapp.market.ltp_store import LTPStore  # noqa: E402

SESSION = date(2026, 6, 19)
TICK_SIZE = 0.05
FEED_LATENCY = timedelta(milliseconds=40)

Tick = tuple  # (symbol, ltp, cumulative volume, exchange_time, received_at)


def make_ticks(instruments: int, total: int, seed: int = 1) -> list[Tick]:
    """`total` ticks: rounds in which every instrument trades once, in a shuffled order.

    Each round is one second of exchange time (Kite stamps ticks to the second), so
    1m candles roll every 60 rounds; the rounds must fit in one session (09:15–15:30).
    """
    rng = random.Random(seed)
    rounds = -(-total // instruments)
    if rounds > 375 * 60:
        raise SystemExit(f"{total} ticks over {instruments} instruments do not fit one session")
    symbols = [f"SYM{index:04d}" for index in range(instruments)]
    price = {s: rng.uniform(50, 5000) // TICK_SIZE * TICK_SIZE for s in symbols}
    volume = dict.fromkeys(symbols, 0)
    open_ = MarketCalendar.nse().session_bounds(SESSION)[0]
    order = list(symbols)
    ticks: list[Tick] = []
    for second in range(rounds):
        exchange_time = open_ + timedelta(seconds=second)
        received_at = exchange_time + FEED_LATENCY
        rng.shuffle(order)
        for symbol in order:
            steps = rng.choice((-2, -1, 0, 0, 1, 2))
            price[symbol] = max(TICK_SIZE, round(price[symbol] + steps * TICK_SIZE, 2))
            volume[symbol] += rng.randint(1, 2_000)
            ticks.append((symbol, price[symbol], volume[symbol], exchange_time, received_at))
            if len(ticks) == total:
                return ticks
    return ticks


def run_once(ticks: list[Tick]) -> tuple[float, float, int]:
    """Wall and CPU seconds to push every tick through the store, and candles closed."""
    closed = [0]

    def sink(candles: list) -> None:
        closed[0] += len(candles)

    def dispatch(quote) -> None:  # stands for the engine's ticks-ready hand-off
        pass

    store = LTPStore()
    aggregator = CandleAgg(sink, MarketCalendar.nse())
    store.subscribe(aggregator.on_quote)
    store.subscribe(dispatch)
    update = store.update
    gc.collect()
    cpu_started = time.process_time()
    started = time.perf_counter()
    for symbol, ltp, volume, exchange_time, received_at in ticks:
        update(symbol, ltp, volume, exchange_time, received_at)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    stats = aggregator.stats
    if (
        stats["symbols"] != len({tick[0] for tick in ticks})
        or stats["late"]
        or stats["outside_session"]
    ):
        raise SystemExit(f"unexpected aggregation: {stats}")
    return seconds, cpu_seconds, closed[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1_000_000, help="ticks per run (≥ 1e6)")
    parser.add_argument("--runs", type=int, default=3, help="runs per size; the median is shown")
    parser.add_argument("--instruments", type=int, nargs="+", default=[50, 3_000])
    args = parser.parse_args()

    rows = []
    wall = cpu = 0.0
    for instruments in args.instruments:
        ticks = make_ticks(instruments, args.ticks)
        results = [run_once(ticks) for _ in range(args.runs)]
        seconds = statistics.median(r[0] for r in results)
        wall += sum(r[0] for r in results)
        cpu += sum(r[1] for r in results)
        candles = results[0][2]
        rows.append((instruments, len(ticks), seconds, len(ticks) / seconds, candles))
        del ticks

    header = ("instruments", "ticks", "seconds", "ticks/s", "candles closed")
    print(f"| {' | '.join(header)} |")
    print(f"|{'|'.join('---:' for _ in header)}|")
    for instruments, count, seconds, rate, candles in rows:
        print(f"| {instruments:,} | {count:,} | {seconds:.3f} | {rate:,.0f} | {candles:,} |")
    print(f"\nmedian of {args.runs} runs each; Python {sys.version.split()[0]}, single thread")
    # Wall time is what counts, but on a busy machine other processes take the core.
    share = cpu / wall
    load = os.getloadavg()[0]
    cpus = os.cpu_count()
    print(f"on-CPU share of the measured time {share:.0%}; load average {load:.2f}, {cpus} CPUs")
    if share < 0.95:
        print("the core was shared with other processes: rerun on an idle machine for the record")


if __name__ == "__main__":
    main()
