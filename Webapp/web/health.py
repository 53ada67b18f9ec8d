"""/healthz: database, feed and engine status for monitors (no login)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import Engine

from Webapp.storage.db import ping
from Webapp.web.appstate import app_state

bp = Blueprint("health", __name__)


def database_status(engine: Engine) -> dict:
    try:
        ping(engine)
    except Exception as exc:  # any failure means down; the type (never the URL) says why
        return {"ok": False, "detail": type(exc).__name__}
    return {"ok": True, "backend": engine.dialect.name}


@bp.get("/healthz")
def healthz():
    state = app_state()
    checks = {"database": database_status(state.db_engine)}
    if state.market_db_engine is not None:
        checks["market_database"] = database_status(state.market_db_engine)
    if state.runtime is None:
        checks["feed"] = {"ok": False, "detail": "not started"}
        checks["engine"] = {"ok": False, "detail": "not started"}
    else:
        checks.update(state.runtime.health())
    healthy = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if healthy else "down", **checks}
    return jsonify(body), 200 if healthy else 503
