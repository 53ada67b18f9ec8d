"""Runs every benchmark in bench/ in turn: `.venv/bin/python bench/run.py [NAME ...]`.

Each script prints one table; this prints them one after another with the
machine they ran on, ready to paste into docs/PERFORMANCE.md. Exit code 1 when
any benchmark failed or missed its target.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


def benchmarks() -> list[Path]:
    """Every script in bench/ but this one; files starting with "_" are shared helpers."""
    return sorted(
        p
        for p in BENCH_DIR.glob("*.py")
        if p.name not in {"run.py", "__init__.py"} and not p.name.startswith("_")
    )


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only these (file names without .py)")
    args = parser.parse_args()
    chosen = [p for p in benchmarks() if not args.names or p.stem in args.names]
    if not chosen:
        print(f"no benchmark matches {args.names}; have: {[p.stem for p in benchmarks()]}")
        return 2
    print(f"Machine: {machine()}\n", flush=True)
    failed = []
    for script in chosen:
        print(f"## {script.stem}\n", flush=True)
        code = subprocess.call([sys.executable, str(script)], cwd=REPO_ROOT)
        if code != 0:
            failed.append(f"{script.stem} (exit {code})")
        print(flush=True)
    if failed:
        print("FAILED or below target: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
