"""Benchmark the OHLCV store: bulk-load rows/s (cold and warm) and a one-year 15m read, per backend.

    .venv/bin/python bench/ohlcv_store.py                  # PostgreSQL and SQLite, 3 runs
    .venv/bin/python bench/ohlcv_store.py --runs 5 --no-pg
    .venv/bin/python bench/ohlcv_store.py --pg-url postgresql+psycopg://postgres@db:5432/postgres

PostgreSQL: a fresh database is created for the run and dropped after, the way
the tests' `pg_database` fixture does it (LADDER_TEST_PG_URL or --pg-url names
the server and a database to connect to for CREATE/DROP DATABASE). SQLite: a
file in a temporary folder. Candle generation is not timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from Webapp.market.calendar import MarketCalendar  # noqa: E402
from Webapp.market.candle import Candle, Timeframe  # noqa: E402
from Webapp.market.ohlcv import OHLCVStore, make_market_engine  # noqa: E402

DEFAULT_PG_URL = os.environ.get(
    "LADDER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TARGETS = {"postgresql": 300_000, "sqlite": 100_000}
READ_TARGET_MS = 20.0
CALENDAR = MarketCalendar.nse()


def synthetic(symbols: int, per_symbol: int, timeframe: Timeframe, first: date) -> list[Candle]:
    """`per_symbol` consecutive NSE bars for each of `symbols` symbols, EMAs filled from bar 200."""
    starts = []
    day = first
    while len(starts) < per_symbol:
        starts.extend(CALENDAR.expected_bars(day, timeframe))
        day = date.fromordinal(day.toordinal() + 1)
    starts = starts[:per_symbol]
    candles = []
    for s in range(symbols):
        symbol, price = f"SYM{s:03d}", 100.0 + 37.5 * s
        for i, ts in enumerate(starts):
            close = price * (1 + ((i * 7919 + s) % 13 - 6) / 2000)
            high, low = max(price, close) * 1.001, min(price, close) * 0.999
            ema = close if i >= 200 else None
            candles.append(
                Candle(symbol, timeframe, ts, price, high, low, close, 1000 + i, ema, ema, ema, ema)
            )
            price = close
    return candles


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(url: str, load: list[Candle], year: list[Candle], runs: int) -> dict:
    store = OHLCVStore(url)
    cold, warm = [], []
    try:
        store.migrate()
        store.bulk_load(year)
        _settle(store)
        symbol, start, end = year[0].symbol, year[0].ts, year[-1].ts + Timeframe.M15.length
        assert store.candles(symbol, Timeframe.M15, start=start, end=end) == year  # warm-up
        reads = [
            timed(lambda: store.candles(symbol, Timeframe.M15, start=start, end=end))
            for _ in range(50)
        ]
        for _ in range(runs):
            _empty(store)
            cold.append(len(load) / timed(lambda: store.bulk_load(load)))
            _checkpoint(store)
            warm.append(len(load) / timed(lambda: store.bulk_load(load)))
    finally:
        store.dispose()
    return {
        "backend": store.backend,
        "cold": cold,
        "warm": warm,
        "reads_ms": [t * 1000 for t in reads],
    }


def _empty(store: OHLCVStore) -> None:
    """Drop and re-create the table, so that every cold run starts from an empty one."""
    from alembic import command

    from Webapp.storage.migrate import market_alembic_config

    store.dispose()
    command.downgrade(market_alembic_config(store.url), "base")
    store.migrate()
    _checkpoint(store)


def _checkpoint(store: OHLCVStore) -> None:
    """Flush the previous load's pages first: a timed load pays for its own writes only."""
    statement = "CHECKPOINT" if store.backend == "postgresql" else "PRAGMA wal_checkpoint(TRUNCATE)"
    engine = make_market_engine(store.url)
    with engine.connect() as conn:
        conn.exec_driver_sql(statement)
    engine.dispose()


def _settle(store: OHLCVStore) -> None:
    """Leave the table as it is a minute after a load, once autovacuum has passed
    (PostgreSQL: VACUUM ANALYZE), so that no vacuum runs during the timed reads."""
    if store.backend == "postgresql":
        engine = make_market_engine(store.url).execution_options(isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE ohlcv")
        engine.dispose()
    _checkpoint(store)


def with_pg_database(admin_url: str, fn):
    name = f"ladder_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        return fn(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cold+warm loads per backend")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rows", type=int, default=500_000, help="5m candles loaded per run")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    load = synthetic(args.symbols, args.rows // args.symbols, Timeframe.M5, date(2024, 1, 1))
    year = _one_year()
    results = []
    if not args.no_pg:
        results.append(
            with_pg_database(args.pg_url, lambda url: measure(url, load, year, args.runs))
        )
    with tempfile.TemporaryDirectory(prefix="ladder-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'market.db'}"
        results.append(measure(url, load, year, args.runs))

    print(
        f"OHLCV store: bulk_load of {len(load):,} 5m candles over {args.symbols} symbols "
        f"(median of {args.runs}, min-max), read of one year of 15m candles "
        f"({len(year):,} rows, median of 50, min-max)"
    )
    print()
    print(
        "| backend | cold load (rows/s) | warm re-load (rows/s) | load target (rows/s) "
        "| 1y 15m read, ≤ 20 ms (ms) | met |"
    )
    print("|---|---|---|---|---|---|")
    ok = True
    for r in results:
        target = TARGETS[r["backend"]]
        met = min(statistics.median(r["cold"]), statistics.median(r["warm"])) >= target
        read_ms = statistics.median(r["reads_ms"])
        met = met and read_ms <= READ_TARGET_MS
        ok = ok and met
        print(
            f"| {r['backend']} | {_rate(r['cold'])} | {_rate(r['warm'])} | ≥ {target:,} "
            f"| {read_ms:.1f} ({min(r['reads_ms']):.1f}-{max(r['reads_ms']):.1f}) "
            f"| {'yes' if met else 'NO'} |"
        )
    print()
    print(
        f"load average (1 min) before the run: {load_before:.2f} on {os.cpu_count()} CPUs", end=""
    )
    # PostgreSQL's backend needs a core of its own beside this script's.
    print(" - the machine was busy: rerun when it is idle" if load_before > 0.5 else "")
    return 0 if ok else 1


def _one_year() -> list[Candle]:
    """Every 15m bar of the NSE sessions of 2025 for one symbol (about 6,200 rows)."""
    bars = []
    for day in CALENDAR.trading_days(date(2025, 1, 1), date(2025, 12, 31)):
        bars.extend(CALENDAR.expected_bars(day, Timeframe.M15))
    return [
        Candle(
            "YEAR",
            Timeframe.M15,
            ts,
            100.0,
            101.0,
            99.0,
            100.5,
            1000 + i,
            100.2,
            100.1,
            100.0,
            99.0,
        )
        for i, ts in enumerate(bars)
    ]


def _rate(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


if __name__ == "__main__":
    sys.exit(main())
