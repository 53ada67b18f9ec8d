"""The trading controls in a real browser: htmx posts, the emergency dialog, the live panel."""

from __future__ import annotations

import pytest

from tests.e2e import test_browser as browser_tests
from tests.e2e.test_browser import ARTIFACTS, log_in

pytestmark = pytest.mark.browser

# The browser module's fixtures: its own `python -m Webapp` server, chromium and a page.
server = browser_tests.server
browser = browser_tests.browser
page = browser_tests.page


def test_pause_button_shows_the_engines_answer(server, page):
    log_in(page, server, server.admin_password)
    page.wait_for_selector("#trading-panel")
    page.click("#trading-pause")
    outcome = page.wait_for_selector('#trading-outcome[data-action="pause"]')
    assert outcome.text_content().startswith("Pause entries: ")


def test_emergency_stop_is_sent_only_after_the_dialog_is_accepted(server, page):
    log_in(page, server, server.admin_password)
    dialogs: list[str] = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("#trading-emergency")  # returns once the dialog was handled
    assert dialogs and dialogs[0].startswith("Emergency stop: cancel every GTT")
    assert page.query_selector("#trading-outcome") is None  # dismissed: nothing sent

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#trading-emergency")
    outcome = page.wait_for_selector('#trading-outcome[data-action="emergency"]')
    # The dialog's confirmation reached the server: it is the engine's answer, not a refusal.
    assert "not sent" not in outcome.text_content()


def test_panel_follows_the_engine_state_without_a_reload(server, page):
    """Needs the engine's real START/STOP: the pushed view makes the page re-fetch the panel."""
    log_in(page, server, server.admin_password)
    page.wait_for_selector('#socket-status[data-state="connected"]')
    page.click("#trading-start")
    page.wait_for_selector('#trading-outcome[data-action="start"][data-ok="true"]')
    page.wait_for_selector('#trading-state[data-state="running"]')
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-trading.png"), full_page=True)
    page.click("#trading-stop")
    page.wait_for_selector('#trading-state[data-state="stopped"]')
