"""The embedded default in a real browser: login, live prices over Socket.IO, refused sockets."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from Webapp.config.settings import Settings

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD_LINE = re.compile(r"^\s*password: (\S+)\s*$")
# Werkzeug logs this once its socket is listening; our own "on http://" line comes before.
LISTENING_LINE = re.compile(r"Running on http://")


@dataclass
class Server:
    url: str
    admin_password: str
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any Ladder setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(extra)
    return env


def pump_lines(stream, lines: queue.Queue) -> None:
    """Reader thread: every output line onto the queue, then None at end of stream."""
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """`python -m Webapp` on a fresh instance folder and a free port, until teardown."""
    port = free_port()
    env = clean_env(
        INSTANCE_PATH=str(tmp_path_factory.mktemp("e2e") / "instance"),
        PORT=str(port),
        SIM_TICKS_PER_SECOND="200",
        SIM_SEED="7",
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "Webapp"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe, drained by one thread: it can never fill up
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=pump_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        password, url = wait_until_serving(lines, port)
        yield Server(url, password, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


def wait_until_serving(lines: queue.Queue, port: int) -> tuple[str, str]:
    """Read output until the admin password, the "on http://" line and the listening socket."""
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: list[str] = []
    password = url = None
    listening = False
    while not (password and url and listening):
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0))
        except queue.Empty:
            pytest.fail(f"no start within {START_TIMEOUT_S} s; output:\n" + "\n".join(seen))
        if line is None:
            pytest.fail("the server exited during start; output:\n" + "\n".join(seen))
        seen.append(line)
        if match := PASSWORD_LINE.match(line):
            password = match[1]
        elif f"on http://127.0.0.1:{port}/" in line:
            url = f"http://127.0.0.1:{port}/"
        elif LISTENING_LINE.search(line):
            listening = True
    return password, url


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def log_in(page, server: Server, password: str) -> None:
    page.goto(server.url)
    assert urlparse(page.url).path == "/login"
    page.fill("#username", "admin")
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_load_state()


def test_admin_logs_in_and_sees_live_prices_tick(server, page):
    log_in(page, server, server.admin_password)

    assert urlparse(page.url).path == "/"
    assert page.text_content("#mode-badge").strip() == "PAPER"
    page.wait_for_selector('#socket-status[data-state="connected"]')
    ltp = page.wait_for_selector("tr[data-symbol] td.ltp")
    symbol = ltp.evaluate("td => td.parentElement.dataset.symbol")
    before = ltp.text_content()
    page.wait_for_function(
        """([symbol, before]) => {
            const td = document.querySelector(`tr[data-symbol="${symbol}"] td.ltp`);
            return td !== null && td.textContent !== before;
        }""",
        arg=[symbol, before],
        timeout=20_000,
    )

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_wrong_password_shows_the_error_and_stays_on_login(server, page):
    log_in(page, server, "not-the-password-1")

    assert urlparse(page.url).path == "/login"
    assert "Wrong username or password" in page.text_content(".flash-error")
    assert page.query_selector("header nav") is None  # no menu: not logged in


def test_socket_without_login_is_refused(server, page):
    page.goto(server.url + "login")
    outcome = page.evaluate(
        """() => new Promise((resolve) => {
            const script = document.createElement("script");
            script.src = "/static/vendor/socket.io.min.js";
            script.onerror = () => resolve({event: "script_error"});
            script.onload = () => {
                const sock = io({reconnection: false});
                sock.on("connect", () => { sock.close(); resolve({event: "connect"}); });
                sock.on("connect_error", (err) => {
                    sock.close();
                    resolve({event: "connect_error", message: err.message});
                });
            };
            document.head.appendChild(script);
        })"""
    )

    assert outcome == {"event": "connect_error", "message": "login required"}
