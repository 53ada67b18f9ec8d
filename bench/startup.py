"""Start-up cost of the embedded default (`python -m Webapp`): cold and warm start, idle RSS.

Run from the repository root: `.venv/bin/python bench/startup.py [--runs 5] [--idle 10]`.
Prints one table; bench/README.md says what each figure means.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
POLL_S = 0.01


class BenchError(Exception):
    """A run did not behave; the message carries the child's output."""


def ladder_setting_names() -> set[str]:
    sys.path.insert(0, str(REPO_ROOT))
    from Webapp.config.settings import Settings

    return set(Settings.model_fields)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Ladder:
    """One `python -m Webapp` child on an instance folder; its output goes to a log file."""

    def __init__(self, instance: Path, base_env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = instance.parent / f"run-{self.port}.log"
        env = dict(base_env, INSTANCE_PATH=str(instance), PORT=str(self.port))
        self._log = self.log_path.open("w")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "Webapp"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def seconds_to_first_healthy(self) -> float:
        """Poll /healthz until it answers 200; seconds since the spawn."""
        deadline = self.started_at + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"exited with {self.process.returncode}:\n{self.output()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                status = conn.getresponse().status
                conn.close()
            except OSError:  # not listening yet
                status = None
            if status == 200:
                return time.perf_counter() - self.started_at
            time.sleep(POLL_S)
        raise BenchError(f"/healthz not 200 within {READY_TIMEOUT_S} s:\n{self.output()}")

    def rss_mib(self) -> float:
        if self.process.poll() is not None:
            raise BenchError(f"exited with {self.process.returncode}:\n{self.output()}")
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise BenchError(f"no VmRSS in /proc/<pid>/status:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]


def one_run(base_env: dict[str, str], idle_s: float) -> tuple[float, float, float]:
    """(cold start s, idle RSS MiB, warm start s) on one fresh instance folder."""
    with tempfile.TemporaryDirectory(prefix="ladder-bench-") as tmp:
        instance = Path(tmp) / "instance"
        cold = Ladder(instance, base_env)
        try:
            cold_s = cold.seconds_to_first_healthy()
            time.sleep(idle_s)  # idle is what is measured: nobody logged in, no requests
            rss = cold.rss_mib()
        finally:
            cold.stop()
        warm = Ladder(instance, base_env)  # same folder: secret key, DB and admin exist
        try:
            warm_s = warm.seconds_to_first_healthy()
        finally:
            warm.stop()
    return cold_s, rss, warm_s


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs (default 5)")
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds before RSS")
    args = parser.parse_args()

    names = ladder_setting_names()
    # The embedded default: no Ladder setting from the caller's environment leaks in.
    base_env = {k: v for k, v in os.environ.items() if k.lower() not in names}
    base_env["PYTHONUNBUFFERED"] = "1"

    cold, rss, warm = [], [], []
    for run in range(1, args.runs + 1):
        try:
            cold_s, rss_mib, warm_s = one_run(base_env, args.idle)
        except BenchError as exc:
            print(f"run {run} failed: {exc}", file=sys.stderr)
            return 1
        cold.append(cold_s)
        rss.append(rss_mib)
        warm.append(warm_s)
        print(f"run {run}/{args.runs} done", file=sys.stderr)

    print(
        f"python -m Webapp (embedded default), {args.runs} runs, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {cpu_model()}"
    )
    print(f"{'figure':<28}{'median':>10}{'min':>10}{'max':>10}")
    for label, values, fmt in (
        ("cold start to /healthz (s)", cold, "{:.2f}"),
        ("warm start to /healthz (s)", warm, "{:.2f}"),
        (f"idle RSS after {args.idle:g} s (MiB)", rss, "{:.1f}"),
    ):
        cells = (fmt.format(v) for v in (statistics.median(values), min(values), max(values)))
        print(f"{label:<28}" + "".join(f"{cell:>10}" for cell in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
