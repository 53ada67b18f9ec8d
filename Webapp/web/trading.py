"""The trading panel (ladders, day P&L, signals, orders, errors) and the engine controls."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from Webapp.execution.commands import Command, CommandKind
from Webapp.execution.engine import Engine, EngineState
from Webapp.execution.runtime import Runtime
from Webapp.execution.trading_view import LadderView, LegView, TradingState, TradingView
from Webapp.web.appstate import app_state
from Webapp.web.auth import admin_required, wants_fragment
from Webapp.web.forms import ActionForm, EmergencyStopForm
from Webapp.web.timefmt import ist

bp = Blueprint("trading", __name__, url_prefix="/trading")

# How long a control waits for the engine's answer before saying "sent, no answer yet".
COMMAND_WAIT_S = 3.0
RECENT_ORDERS = 10
RECENT_ERRORS = 5
# States whose reason the trader needs to read (running needs none).
STATES_WITH_REASON = {
    TradingState.STOPPED,
    TradingState.FAILED,
    TradingState.PAUSED,
    TradingState.EMERGENCY,
}
NO_RUNTIME = "The trading engine is not running in this process: no controls."
ACTIONS = {  # URL action -> (command, button label)
    "start": (CommandKind.START, "Start"),
    "stop": (CommandKind.STOP, "Stop"),
    "pause": (CommandKind.PAUSE, "Pause entries"),
    "resume": (CommandKind.RESUME, "Resume entries"),
    "reload": (CommandKind.RELOAD, "Reload parameters"),
    "emergency": (CommandKind.EMERGENCY, "Emergency stop"),
}
# Defence in depth: engine and broker messages are already scrubbed, but a secret that
# slipped into one must still never reach a page.
_SECRET = re.compile(
    r"(?i)\b(access_token|api_secret|request_token|checksum|enctoken|password)"
    r"(\s*[=:]\s*)[^&\s\"',;]+"
)
_AUTH_HEADER = re.compile(r"(?i)\b(token|bearer)\s+[A-Za-z0-9_-]+:[A-Za-z0-9_-]+")


def scrub(text: str | None) -> str:
    """A message safe to show: secret-looking values replaced by [redacted]."""
    if not text:
        return ""
    text = _SECRET.sub(r"\1\2[redacted]", text)
    return _AUTH_HEADER.sub(r"\1 [redacted]", text)


def money(value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    # + 0.0 turns a rounded -0.0 into 0.0: a flat P&L shows "+0.00", not "-0.00".
    value = round(value, 2) + 0.0
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def direction(value: float | None) -> str:
    if not value or round(value, 2) == 0:
        return ""
    return "up" if value > 0 else "down"


def age(seconds: float | None) -> str:
    """Held time, short: 45s, 12m 05s, 2h 03m, 3d 04h."""
    if seconds is None:
        return ""
    seconds = max(int(seconds), 0)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def words(value: str) -> str:
    return value.replace("_", " ")


def leg_row(leg: LegView) -> dict:
    state = words(leg.state)
    if leg.exit_reason:
        state = f"{state} ({words(leg.exit_reason)})"
    return {
        "position": f"P{leg.position}",
        "state": state,
        "qty": leg.qty,
        "entry": money(leg.entry),
        "ltp": money(leg.ltp),
        "pnl": money(leg.pnl, signed=True),
        "pnl_pct": "" if leg.pnl_pct is None else f"{round(leg.pnl_pct, 2) + 0.0:+.2f}",
        "direction": direction(leg.pnl),
        "stop": money(leg.stop),
        "gtt_trigger": money(leg.gtt_trigger),
        "target": money(leg.target),
        "age": age(leg.age_s),
    }


def ladder_row(ladder: LadderView) -> dict:
    return {
        "symbol": ladder.symbol,
        "state": words(ladder.state),
        "opened_at": ist(ladder.opened_at, "%H:%M:%S"),
        "pnl": money(ladder.pnl, signed=True),
        "direction": direction(ladder.pnl),
        "legs": [leg_row(leg) for leg in sorted(ladder.legs, key=lambda leg: leg.position)],
    }


def day_rows(view: TradingView) -> dict:
    day = view.day
    return {
        "realised": money(day.realised, signed=True),
        "realised_direction": direction(day.realised),
        "charges": money(day.charges),
        "unrealised": money(day.unrealised, signed=True),
        "unrealised_direction": direction(day.unrealised),
        "net": money(day.net, signed=True),
        "net_direction": direction(day.net),
        "loss_limit_hit": day.loss_limit_hit,
    }


def signal_rows(view: TradingView) -> list[dict]:
    # Ladders and fresh entries first: those are what the trader looks for.
    order = {"open": 0, "entered": 1}
    signals = sorted(view.signals, key=lambda s: (order.get(s.state, 2), s.symbol))
    return [
        {
            "symbol": s.symbol,
            "state": words(s.state),
            "reason": words(s.reason),
            "detail": scrub(s.detail),
            "day_change_pct": "" if s.day_change_pct is None else f"{s.day_change_pct:+.2f}",
            "at": ist(s.at, "%H:%M:%S"),
        }
        for s in signals
    ]


def order_rows(view: TradingView) -> list[dict]:
    return [
        {
            "at": ist(o.at, "%H:%M:%S"),
            "symbol": o.symbol,
            "side": o.side,
            "order_type": o.order_type,
            "qty": o.qty,
            "price": money(o.price),
            "state": words(o.state),
            "purpose": o.purpose,
            "tag": o.tag or "",
            "message": scrub(o.message),
        }
        for o in view.orders[:RECENT_ORDERS]
    ]


def trading_panel(runtime: Runtime | None) -> dict:
    """Everything the trading panel shows; the dashboard page and the htmx partial use it."""
    if runtime is None:
        return {"available": False}
    view = runtime.engine.view()
    entered = sum(1 for s in view.signals if s.state == "entered")
    return {
        "available": True,
        "state": view.state.value,
        "detail": scrub(view.detail) if view.state in STATES_WITH_REASON else "",
        "entries_paused": view.entries_paused,
        "broker": view.broker,
        "params_version": view.params_version,
        "updated_at": ist(view.updated_at, "%H:%M:%S"),
        "day": day_rows(view),
        "ladders": [ladder_row(ladder) for ladder in view.ladders],
        "legs_open": sum(len(ladder.legs) for ladder in view.ladders),
        "signals": signal_rows(view),
        "signals_entered": entered,
        "orders": order_rows(view),
        "errors": [
            {"at": ist(e.at, "%H:%M:%S"), "message": scrub(e.message)}
            for e in view.errors[:RECENT_ERRORS]
        ],
        "reconciled": [scrub(note) for note in view.reconciled],
    }


@dataclass(frozen=True)
class Outcome:
    """What a control did: ok True/False is the engine's answer, None means no answer yet."""

    action: str
    ok: bool | None
    message: str

    @property
    def category(self) -> str:
        return {True: "success", False: "error", None: "info"}[self.ok]


def trading_controls(runtime: Runtime | None, outcome: Outcome | None = None) -> dict:
    return {
        "available": runtime is not None,
        "actions": {action: label for action, (_kind, label) in ACTIONS.items()},
        "outcome": outcome,
    }


def engine_unavailable(runtime: Runtime | None) -> str | None:
    """Why a command cannot be handled now, or None when the engine thread is there."""
    if runtime is None:
        return NO_RUNTIME
    status = runtime.engine.status()
    if status.state is not EngineState.RUNNING:
        reason = f": {status.detail}" if status.detail else ""
        return f"The engine thread is {status.state.value}{reason}; the command was not sent."
    return None


def send_command(engine: Engine, action: str, actor: str, wait_s: float = COMMAND_WAIT_S):
    """Queue one control for the engine and wait briefly for its answer.

    The engine writes the command and its outcome to the audit log itself.
    """
    kind, label = ACTIONS[action]
    command = Command(kind, actor=actor)  # RELOAD without text: re-read param.yaml
    engine.command(command)
    result = command.wait(wait_s)
    if result is None:
        return Outcome(
            action,
            None,
            f"{label}: sent; no answer within {wait_s:g} s (the engine will still handle it).",
        )
    return Outcome(action, result.ok, f"{label}: {scrub(result.message)}")


@bp.get("/panel")
def panel():
    """htmx: the live trading panel (re-fetched when the socket says the view changed)."""
    return render_template(
        "partials/trading_panel.html", trading=trading_panel(app_state().runtime)
    )


@bp.post("/<any(start, stop, pause, resume, reload, emergency):action>")
@admin_required
def command(action: str):
    """Admins only: send one control to the engine; answer with the controls and the outcome."""
    runtime = app_state().runtime
    form = EmergencyStopForm() if action == "emergency" else ActionForm()
    if not form.validate_on_submit():
        # CSRF is checked before the view; what fails here is the emergency confirmation.
        message = "Emergency stop not sent: it needs the confirmation (type EMERGENCY)."
        return _answer(runtime, Outcome(action, False, message), 400)
    refused = engine_unavailable(runtime)
    if refused:
        return _answer(runtime, Outcome(action, False, refused), 503)
    outcome = send_command(runtime.engine, action, current_user.username)
    status = {True: 200, False: 409, None: 202}[outcome.ok]
    return _answer(runtime, outcome, status)


def _answer(runtime: Runtime | None, outcome: Outcome, status: int):
    if wants_fragment():
        html = render_template(
            "partials/trading_controls.html", controls=trading_controls(runtime, outcome)
        )
        return html, status
    # Without JavaScript: the dashboard shows the outcome as a flash message.
    flash(outcome.message, outcome.category)
    return redirect(url_for("dashboard.index"), 303)
