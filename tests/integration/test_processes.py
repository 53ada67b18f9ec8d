"""Real processes: start-up refusals, gunicorn's gthread worker, and `flask params check`."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from Webapp.config.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PARAMS = REPO_ROOT / "support_files" / "param.yaml"
RUN_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any Ladder setting; a fresh instance folder."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(INSTANCE_PATH=str(tmp_path / "instance"), PYTHONUNBUFFERED="1", **extra)
    return env


def tool(name: str) -> list[str]:
    """The venv's console script when it sits next to this Python, else `python -m name`."""
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


@pytest.fixture
def invalid_params(tmp_path) -> Path:
    """The shipped param.yaml with one bad value: p1.sl_pct = -1."""
    text, replaced = re.subn(
        r"(?m)^(p1:[^\n]*\n\s+sl_pct:)\s*[0-9.]+",
        r"\1 -1",
        SHIPPED_PARAMS.read_text(encoding="utf-8"),
    )
    assert replaced == 1, "the shipped param.yaml no longer starts p1 with sl_pct"
    path = tmp_path / "param.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_webapp(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "Webapp"],
        cwd=REPO_ROOT,
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


# --- python -m Webapp refuses a bad configuration with a message, not a traceback -------------


def test_invalid_params_file_stops_the_start_naming_the_key(tmp_path, invalid_params):
    result = run_webapp(tmp_path, PARAMS_PATH=str(invalid_params))

    assert result.returncode == 2, result.stderr
    assert "p1.sl_pct" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRADING_MODE": "live"}, "TRADING_MODE=live"),
        ({"PORT": "notaport"}, "PORT"),
        ({"FEED": "kite"}, "FEED=kite"),
    ],
    ids=["live-mode", "port-not-a-number", "kite-feed"],
)
def test_unusable_setting_stops_the_start_with_a_clear_message(tmp_path, env, message):
    result = run_webapp(tmp_path, **env)

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Ladder cannot start:"), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_taken_port_stops_the_start_before_any_password_is_shown(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        result = run_webapp(tmp_path, PORT=str(holder.getsockname()[1]))

    assert result.returncode == 2, result.stderr
    assert "Address already in use" in result.stderr
    assert "password" not in result.stdout
    assert not (tmp_path / "instance" / "ladder.db").exists()  # no admin was created


# --- gunicorn, gthread worker class, exactly one worker ---------------------------------------


class Output:
    """A child's merged stdout/stderr, read line by line by a thread into a queue."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(process.stdout,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, needle: str, timeout: float = RUN_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(f"no {needle!r} within {timeout} s; output:\n{self.text}")
            if line is None:
                pytest.fail(f"the process ended before {needle!r}; output:\n{self.text}")
            self.lines.append(line)
            if needle in line:
                return line

    def drain(self, timeout: float = 5) -> str:
        """Everything up to end of stream (call once the process has exited)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return self.text

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def start_gunicorn(tmp_path: Path, port: int, **env: str) -> tuple[subprocess.Popen, Output]:
    process = subprocess.Popen(
        [
            *tool("gunicorn"),
            "--worker-class",
            "gthread",
            "--workers",
            "1",
            "--threads",
            "8",
            "--bind",
            f"127.0.0.1:{port}",
            # As the systemd unit runs it; also keeps parallel runs off ~/.gunicorn/gunicorn.ctl.
            "--no-control-socket",
            "wsgi:app",
        ],
        cwd=REPO_ROOT,
        env=clean_env(tmp_path, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    return process, Output(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def get(port: int, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


def test_gunicorn_gthread_serves_health_and_stops_on_sigterm(tmp_path):
    port = free_port()
    process, output = start_gunicorn(tmp_path, port)
    try:
        output.wait_for("Listening at")
        output.wait_for("runtime started")
        # The engine's first heartbeat may still be due: a few tries, each a short wait.
        pause = threading.Event()
        for _ in range(50):
            health = get(port, "/healthz")
            if health.status == 200:
                break
            pause.wait(0.1)
        body = json.loads(health.body)
        assert health.status == 200, body
        assert body["status"] == "ok"
        assert body["database"]["ok"] and body["feed"]["ok"] and body["engine"]["ok"]

        home = get(port, "/")
        assert home.status == 302
        assert home.getheader("Location").startswith("/login")

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0, output.drain()
    finally:
        stop(process)


def test_gunicorn_halts_on_invalid_params_instead_of_respawning(tmp_path, invalid_params):
    process, output = start_gunicorn(tmp_path, free_port(), PARAMS_PATH=str(invalid_params))
    try:
        returncode = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"gunicorn still running after {STOP_TIMEOUT_S} s:\n{output.drain()}")
    finally:
        stop(process)
    text = output.drain()

    assert returncode != 0, text
    assert "p1.sl_pct" in text
    assert text.count("Booting worker") == 1, text
    assert "Traceback" not in text


# --- flask params check -----------------------------------------------------------------------


def params_check(tmp_path: Path, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*tool("flask"), "--app", "Webapp", "params", "check", str(path)],
        cwd=REPO_ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def test_params_check_refuses_an_invalid_file_naming_the_key(tmp_path, invalid_params):
    result = params_check(tmp_path, invalid_params)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "p1.sl_pct" in result.stderr


def test_params_check_accepts_the_shipped_file(tmp_path):
    result = params_check(tmp_path, SHIPPED_PARAMS)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout
