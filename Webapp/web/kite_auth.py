"""Kite login (redirect out with a one-time state, callback back in) and Kite's order postback."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Mapping
from urllib.parse import quote

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy.orm import Session

from Webapp.broker import kite_session
from Webapp.broker.base import BrokerError
from Webapp.storage import audit
from Webapp.web.appstate import app_state, db
from Webapp.web.auth import admin_required, client_addr
from Webapp.web.extensions import csrf
from Webapp.web.settings import secret_box
from Webapp.web.timefmt import ist

log = logging.getLogger(__name__)

bp = Blueprint("kite_auth", __name__, url_prefix="/kite")

KITE_LOGIN_URL = "https://kite.zerodha.com/connect/login"
STATE_KEY = "kite_login_state"
STATE_TTL_S = 600  # the user has ten minutes on Kite's login page


# --- the one-time state ------------------------------------------------------------


def _new_state() -> str:
    state = secrets.token_urlsafe(24)
    session[STATE_KEY] = {"value": state, "expires": time.time() + STATE_TTL_S}
    return state


def _take_state(offered: str | None) -> bool:
    """True once for the state this session issued; used, wrong or stale states are refused."""
    kept = session.pop(STATE_KEY, None)  # single use, whatever the outcome
    if not kept or not offered or time.time() > kept.get("expires", 0):
        return False
    return hmac.compare_digest(str(kept.get("value", "")).encode(), offered.encode())


# --- routes ------------------------------------------------------------------------


@bp.get("/login")
@admin_required
def login():
    from kiteconnect import KiteConnect

    api_key = kite_session.saved_api_key(db(), secret_box())
    if not api_key:
        flash("Save the Kite api key and secret first.", "error")
        return redirect(url_for("settings.index"))
    kite = KiteConnect(api_key)
    # login_url() reads the class default; an instance value points it at kitesim in tests.
    kite._default_login_uri = app_state().settings.kite_login_url or KITE_LOGIN_URL
    redirect_params = quote(f"state={_new_state()}", safe="")
    return redirect(f"{kite.login_url()}&redirect_params={redirect_params}")


@bp.get("/callback")
@admin_required
def callback():
    if not _take_state(request.args.get("state")):
        return _fail(
            "This Kite login reply is not one this session asked for, or it was already "
            "used or is over ten minutes old. Start again with “Log in to Kite”."
        )
    if request.args.get("status") != "success" or not request.args.get("request_token"):
        return _fail("Kite did not complete the login (cancelled or refused). Try again.")
    sess = db()
    try:
        status = kite_session.complete_login(
            sess,
            secret_box(),
            request.args["request_token"],
            app_state().settings.kite_rest_root,
            kite_session.utc_now(),
        )
    except kite_session.KiteLoginError as exc:
        sess.rollback()
        return _fail(str(exc))
    audit.record(
        sess, current_user.username, "kite_login", client_addr(), kite_user=status.kite_user_id
    )
    sess.commit()
    _hand_token_to_broker(sess)
    flash(
        f"Logged in to Kite as {status.kite_user_id or 'your user'}; the session is valid "
        f"until {ist(status.expires_at, '%H:%M IST on %d %b %Y')}.",
        "success",
    )
    return redirect(url_for("dashboard.index"))


def _hand_token_to_broker(sess: Session) -> None:
    """A paused live broker resumes with the new token, without a restart.

    The token is read back through kite_session (never logged). The feed needs no help:
    it reads the stored token itself whenever Kite refuses the old one.
    """
    broker = getattr(app_state().runtime, "broker", None)
    set_access_token = getattr(broker, "set_access_token", None)
    if set_access_token is None:
        return  # paper mode, or no runtime in this process
    token = kite_session.valid_access_token(sess, secret_box(), kite_session.utc_now())
    if token:
        set_access_token(token)
        log.info("Kite login: the running broker now uses the new session")


def _fail(message: str):
    sess = db()
    audit.record(sess, current_user.username, "kite_login_failed", client_addr())
    sess.commit()
    flash(f"Kite login failed: {message}", "error")
    return redirect(url_for("dashboard.index"))


@bp.get("/status")
def status():
    """htmx: the token-status block, refreshed in place."""
    return render_template("partials/kite_token_status.html")


@bp.post("/postback")
@csrf.exempt
def postback():
    """Kite's order postback: JSON signed with sha256(order_id + order_timestamp + api_secret)."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return {"error": "expected a JSON object"}, 400
    order_id = str(payload.get("order_id") or "")
    checksum_ok = kite_session.postback_checksum_ok(
        db(),
        secret_box(),
        order_id,
        str(payload.get("order_timestamp") or ""),
        str(payload.get("checksum") or ""),
    )
    if checksum_ok is None:
        return {"error": "Kite credentials are not configured"}, 503
    if not checksum_ok:
        # The order id only: the payload carries the checksum and account details.
        log.warning(
            "Kite postback refused: bad checksum (order %s, from %s)",
            _printable(order_id),
            client_addr(),
        )
        return {"error": "bad checksum"}, 403
    runtime = app_state().runtime
    broker = getattr(runtime, "broker", None)
    ingest = getattr(broker, "ingest_order_update", None)
    if ingest is None:
        return {"error": "no live broker is running"}, 503
    try:
        ingest(payload, source="postback")
    except BrokerError as exc:
        return {"error": exc.message}, 400
    return {"status": "ok"}


def _printable(value: str) -> str:
    # A log line must not be forged with newlines from a stranger's request.
    return re.sub(r"[^A-Za-z0-9_.:-]", "?", value)[:40]


# --- template helpers --------------------------------------------------------------


@bp.app_template_global("kite_token_status")
def token_status_for_templates() -> kite_session.TokenStatus:
    return kite_session.token_status(db(), kite_session.utc_now())


@bp.app_template_global("broker_status")
def broker_status_for_templates():
    """The running broker's BrokerStatus, when the runtime has a broker; else None."""
    broker = getattr(app_state().runtime, "broker", None)
    status = getattr(broker, "status", None)
    return status() if callable(status) else None


# --- request-log redaction ---------------------------------------------------------

_SECRET_PARAM = re.compile(r"(request_token|access_token|api_secret|checksum)=[^&\s\"']*")


class RedactSecrets(logging.Filter):
    """Masks secret query parameters in request-log lines (the callback's request_token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        if isinstance(record.args, Mapping):  # gunicorn's access log passes its atoms so
            record.args = {key: _redact(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact(value) for value in record.args)
        return True


def _redact(value: object) -> object:
    return _SECRET_PARAM.sub(r"\1=[redacted]", value) if isinstance(value, str) else value


REQUEST_LOGGERS = ("werkzeug", "gunicorn.access")


def install_log_redaction() -> None:
    """Once per process: request loggers never show the callback's request token."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
