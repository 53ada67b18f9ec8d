"""Starting a Ladder process: migrate the DB, make the first admin, start the runtime."""

from __future__ import annotations

import logging

from flask import Flask

from Webapp.execution.runtime import Runtime
from Webapp.storage import audit, users
from Webapp.storage.db import transaction
from Webapp.storage.models import Role
from Webapp.web.extensions import socketio
from Webapp.web.sockets import PriceBridge, TradingBridge

log = logging.getLogger(__name__)


def ensure_first_admin(app: Flask) -> str | None:
    """With no users at all, create `admin` with a random password; return it (once)."""
    state = app.extensions["ladder"]
    with transaction(state.sessions) as session:
        if users.count_users(session):
            return None
        password = users.generate_password()
        users.create_user(session, "admin", password, Role.ADMIN.value)
        audit.record(session, "system", "first_admin_created", username="admin")
    return password


def start_services(app: Flask) -> Runtime:
    """Validate params and settings, then start broker, feed, engine, price and trading push.

    Raises ParamsError or StartupError with a message for the operator; the
    callers print it and exit without a traceback.
    """
    state = app.extensions["ladder"]
    # build() migrates the app DB once the settings are known to be usable.
    runtime = Runtime.build(state.settings, sessions=state.sessions)
    runtime.start()
    bridges = [
        PriceBridge(socketio, runtime, state.settings.price_push_hz),
        TradingBridge(socketio, runtime),
    ]
    for bridge in bridges:
        bridge.start()
    state.runtime = runtime
    state.bridges.extend(bridges)
    return runtime


def stop_services(app: Flask) -> None:
    state = app.extensions["ladder"]
    for bridge in state.bridges:
        bridge.stop()
    state.bridges.clear()
    if state.runtime is not None:
        state.runtime.stop()
        state.runtime = None
