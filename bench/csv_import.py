"""Benchmark the whole CSV import (read, parse, check, EMAs, store) of the real NSE data.

    .venv/bin/python bench/csv_import.py                   # PostgreSQL and SQLite, 3 runs
    .venv/bin/python bench/csv_import.py --runs 5 --no-pg
    .venv/bin/python bench/csv_import.py --pg-url postgresql+psycopg://postgres@db:5432/postgres

Imports ../shared/data/nse-daily-2020-2025 (50 files) and nse-5min-2026 (47 files)
with `import_many`, as `flask data import` does: into an empty store (cold), then
again with every row already stored (re-import, which must change nothing).
PostgreSQL: a fresh database `ladder_bench_<random>`, dropped at the end even on
failure. SQLite: a file in a temporary folder. Skips (exit 0) without the data.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ohlcv_store import DEFAULT_PG_URL, with_pg_database  # noqa: E402
from ohlcv_store import _checkpoint as checkpoint  # noqa: E402 (bench/ is on sys.path)
from ohlcv_store import _empty as empty  # noqa: E402

from Webapp.market import csv_rows  # noqa: E402
from Webapp.market.calendar import MarketCalendar  # noqa: E402
from Webapp.market.csv_import import expand_paths, import_many  # noqa: E402
from Webapp.market.ohlcv import OHLCVStore  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {"nse-daily-2020-2025": 61_135, "nse-5min-2026": 77_550}  # rows, per its README
TARGETS = {"postgresql": 300_000, "sqlite": 100_000}
CALENDAR = MarketCalendar.nse()


def measure(url: str, runs: int) -> list[dict]:
    """Per dataset: rows/s of each cold import and each re-import."""
    results = []
    store = OHLCVStore(url)
    try:
        store.migrate()
        for dataset, rows in DATASETS.items():
            files = expand_paths([SHARED_DATA / dataset])
            cold, again = [], []
            for _ in range(runs):
                empty(store)  # the schema dropped and re-created, flushed
                store.symbols()  # connect before the clock starts
                cold.append(rows / _timed_import(store, files, rows, cold=True))
                checkpoint(store)  # a timed import pays for its own writes only
                again.append(rows / _timed_import(store, files, rows, cold=False))
            results.append(
                {"backend": store.backend, "dataset": dataset, "cold": cold, "again": again}
            )
    finally:
        store.dispose()
    return results


def _timed_import(store: OHLCVStore, files: list[Path], rows: int, *, cold: bool) -> float:
    csv_rows.forget_times()  # as in a new process: no time parsed yet
    start = time.perf_counter()
    reports = import_many(store, files, calendar=CALENDAR)
    seconds = time.perf_counter() - start
    refused = [line for r in reports for line in r.errors]
    if refused:
        raise SystemExit("import refused files:\n  " + "\n  ".join(refused[:10]))
    imported = sum(r.rows for r in reports)
    changed = sum(r.changed for r in reports)
    if imported != rows or changed != (rows if cold else 0):
        raise SystemExit(f"imported {imported} rows, changed {changed}: expected {rows}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cold + re-import runs per dataset")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    missing = [d for d in DATASETS if not (SHARED_DATA / d).is_dir()]
    if missing:
        print(f"skipped: real market data not found in {SHARED_DATA} ({', '.join(missing)})")
        return 0
    load_before = os.getloadavg()[0]
    results = []
    if not args.no_pg:
        results += with_pg_database(args.pg_url, lambda url: measure(url, args.runs))
    with tempfile.TemporaryDirectory(prefix="ladder-bench-") as folder:
        results += measure(f"sqlite:///{Path(folder) / 'market.db'}", args.runs)

    print(
        f"CSV import, whole (read, parse, check, EMAs, store), import_many of a folder: "
        f"rows/s, best and median of {args.runs}"
    )
    print()
    print("| backend | data | rows | cold: best | cold: median | re-import: best "
          "| re-import: median | target | met |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    ok = True
    for r in results:
        target = TARGETS[r["backend"]]
        met = min(statistics.median(r["cold"]), statistics.median(r["again"])) >= target
        ok = ok and met
        print(
            f"| {r['backend']} | {r['dataset']} | {DATASETS[r['dataset']]:,} "
            f"| {max(r['cold']):,.0f} | {statistics.median(r['cold']):,.0f} "
            f"| {max(r['again']):,.0f} | {statistics.median(r['again']):,.0f} "
            f"| ≥ {target:,} | {'yes' if met else 'NO'} |"
        )
    print()
    print(
        f"load average (1 min) before the run: {load_before:.2f} on {os.cpu_count()} CPUs", end=""
    )
    # PostgreSQL's backend needs a core of its own beside this script's.
    print(" - the machine was busy: rerun when it is idle" if load_before > 0.5 else "")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
