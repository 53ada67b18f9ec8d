"""Admin controls on the dashboard: commands reach the engine, with CSRF, roles and confirmation."""

from __future__ import annotations

import pytest
from markupsafe import escape

from tests.conftest import csrf_token
from tests.integration import trading_support
from tests.integration.trading_support import wait_for_view, watch_views
from Webapp.execution.commands import CommandKind
from Webapp.execution.trading_view import TradingState
from Webapp.storage import audit
from Webapp.web.trading import ACTIONS, send_command

# The shared fixtures (a not-started runtime; the real services), used here by name.
built_runtime = trading_support.built_runtime
running = trading_support.running

HTMX = {"HX-Request": "true"}
BUTTONS = ["trading-start", "trading-stop", "trading-pause", "trading-resume", "trading-reload"]


@pytest.fixture
def sent(monkeypatch, app):
    """Every command the web layer hands to the engine (which still receives it)."""
    commands = []

    def record(runtime):
        real = runtime.engine.command

        def command(cmd):
            commands.append(cmd)
            real(cmd)

        monkeypatch.setattr(runtime.engine, "command", command)

    return commands, record


def post(client, action: str, headers=HTMX, **data):
    token = csrf_token(client.get("/").text)
    return client.post(f"/trading/{action}", data={"csrf_token": token, **data}, headers=headers)


def test_admin_sees_every_control_and_the_emergency_stop_asks_first(admin_client, running):
    page = admin_client.get("/").text
    for button in [*BUTTONS, "trading-emergency"]:
        assert f'id="{button}"' in page
    assert 'hx-confirm="Emergency stop: cancel every GTT' in page
    assert "Reload parameters" in page


def test_viewer_sees_no_controls(viewer_client, running):
    page = viewer_client.get("/").text
    assert 'id="trading-controls"' not in page
    assert "trading-emergency" not in page
    assert 'id="trading-panel"' in page  # but sees the trading panel


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_viewer_cannot_send_any_command(viewer_client, running, sent, action):
    commands, record = sent
    record(running)
    response = post(viewer_client, action, confirm="EMERGENCY")
    assert response.status_code == 403
    assert commands == []


def test_a_command_without_the_csrf_token_is_refused(admin_client, running, sent):
    commands, record = sent
    record(running)
    response = admin_client.post("/trading/pause", headers=HTMX)
    assert response.status_code == 400
    assert "CSRF" in response.text
    assert commands == []


@pytest.mark.parametrize("confirm", [None, "", "yes", "emergency "])
def test_emergency_stop_without_the_confirmation_is_refused_and_not_sent(
    admin_client, running, sent, confirm
):
    commands, record = sent
    record(running)
    data = {} if confirm is None else {"confirm": confirm}
    response = post(admin_client, "emergency", **data)
    assert response.status_code == 400
    assert "Emergency stop not sent" in response.text
    assert commands == []


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_a_command_reaches_the_engine_and_its_answer_comes_back(
    admin_client, running, sent, action
):
    commands, record = sent
    record(running)
    response = post(admin_client, action, confirm="EMERGENCY")
    (command,) = commands
    assert command.kind is ACTIONS[action][0]
    assert command.actor == "alice"
    assert command.params_text is None  # RELOAD re-reads param.yaml
    result = command.wait(0)
    assert result is not None, "the engine answered within the wait"
    assert response.status_code == (200 if result.ok else 409)
    assert str(escape(result.message)) in response.text
    assert 'id="trading-outcome"' in response.text
    assert response.text.strip().startswith('<div id="trading-controls"')


def test_without_javascript_the_answer_is_flashed_on_the_dashboard(admin_client, running, sent):
    commands, record = sent
    record(running)
    response = post(admin_client, "pause", headers={})
    assert response.status_code == 303 and response.headers["Location"] == "/"
    message = commands[0].wait(0).message
    assert str(escape(message)) in admin_client.get("/").text


def test_no_runtime_means_no_controls_and_503(app, admin_client, sent):
    assert app.extensions["ladder"].runtime is None
    page = admin_client.get("/").text
    assert "The trading engine is not running in this process: no controls." in page
    assert "trading-emergency" not in page
    response = post(admin_client, "pause")
    assert response.status_code == 503
    assert "not running in this process" in response.text


def test_an_engine_thread_that_is_not_running_refuses_commands(admin_client, built_runtime, sent):
    commands, record = sent
    record(built_runtime)
    response = post(admin_client, "start")
    assert response.status_code == 503
    assert "The engine thread is stopped" in response.text
    assert commands == []


def test_an_engine_that_does_not_answer_in_time_is_reported_as_sent(built_runtime):
    # The engine thread is not started: the command waits in its queue.
    outcome = send_command(built_runtime.engine, "pause", "alice", wait_s=0.05)
    assert outcome.ok is None
    assert outcome.message == (
        "Pause entries: sent; no answer within 0.05 s (the engine will still handle it)."
    )


# --- these need the engine's real command handling (Webapp/execution/engine.py) --------


def running_trader(client, runtime, seen) -> None:
    """Press Start (the services may have started trading already) and wait until it trades."""
    response = post(client, "start")
    assert response.status_code == 200 or "already running" in response.text, response.text
    wait_for_view(runtime, seen, lambda v: v.state is TradingState.RUNNING)


def test_pause_resume_stop_and_start_move_the_engine_state(admin_client, running):
    seen = watch_views(running)
    running_trader(admin_client, running, seen)
    steps = [
        ("pause", lambda v: v.state is TradingState.PAUSED or v.entries_paused),
        ("resume", lambda v: v.state is TradingState.RUNNING and not v.entries_paused),
        ("stop", lambda v: v.state is TradingState.STOPPED),
        ("start", lambda v: v.state is TradingState.RUNNING),
    ]
    for action, reached in steps:
        response = post(admin_client, action)
        assert response.status_code == 200, response.text
        assert 'data-ok="true"' in response.text
        view = wait_for_view(running, seen, reached)
        panel = admin_client.get("/trading/panel").text
        assert f'data-state="{view.state.value}"' in panel
        if view.state is not TradingState.RUNNING:  # the reason, with who did it
            assert "alice" in panel


def test_a_refused_command_says_why(admin_client, running):
    seen = watch_views(running)
    running_trader(admin_client, running, seen)
    response = post(admin_client, "resume")  # running, not paused
    assert response.status_code == 409
    assert 'data-ok="false"' in response.text
    assert "Resume entries: nothing to resume while running" in response.text


def test_emergency_stop_with_confirmation_stops_the_engine(admin_client, running):
    seen = watch_views(running)
    running_trader(admin_client, running, seen)
    response = post(admin_client, "emergency", confirm="EMERGENCY")
    assert response.status_code == 200, response.text
    view = wait_for_view(running, seen, lambda v: v.state is not TradingState.RUNNING)
    assert view.state in (TradingState.EMERGENCY, TradingState.STOPPED)


def test_reload_parameters_reports_the_outcome(admin_client, running):
    response = post(admin_client, "reload")
    assert response.status_code == 200, response.text
    assert 'data-ok="true"' in response.text
    assert "Reload parameters: " in response.text


def test_the_engine_audits_the_command_under_the_admins_name(app, admin_client, running):
    with app.extensions["ladder"].sessions() as session:
        before = {entry.id for entry in audit.recent(session)}
    post(admin_client, "pause")
    with app.extensions["ladder"].sessions() as session:
        new = [e for e in audit.recent(session) if e.id not in before]
    by_alice = [e for e in new if e.actor == "alice"]
    # One entry, the engine's (with the outcome): the web layer writes no second one.
    assert len(by_alice) == 1, [(e.action, e.detail) for e in by_alice]
    assert CommandKind.PAUSE.value in f"{by_alice[0].action} {by_alice[0].detail}"
