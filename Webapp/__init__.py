"""Ladder: a self-hosted momentum-ladder trading server. create_app() builds the web app."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from werkzeug.middleware.proxy_fix import ProxyFix

from Webapp.config.settings import REPO_ROOT, Settings, ensure_secret_key, load_settings
from Webapp.storage.db import make_engine, make_session_factory
from Webapp.web.appstate import AppState, close_db

log = logging.getLogger(__name__)


class _SecureWhenHttps(SecureCookieSessionInterface):
    """Mark the session cookie Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def create_app(config: dict[str, Any] | None = None, settings: Settings | None = None) -> Flask:
    """Build the app. It starts no thread: see Webapp.services.start_services()."""
    settings = settings or load_settings()
    app = Flask(
        __name__,
        instance_path=str(settings.instance_path),
        template_folder=str(REPO_ROOT / "templates"),
        static_folder=str(REPO_ROOT / "static"),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key or ensure_secret_key(settings.instance_path),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=False,
        SESSION_COOKIE_NAME="ladder_session",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=50 * 1024 * 1024,
    )
    app.config.update(config or {})
    app.session_interface = _SecureWhenHttps()
    if settings.trust_proxy:
        # nginx sets X-Forwarded-For/-Proto/-Host; one proxy hop is trusted.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)

    db_engine = make_engine(settings.resolved_database_url)
    market_engine = (
        make_engine(settings.market_database_url) if settings.market_database_url else None
    )
    app.extensions["ladder"] = AppState(
        settings, db_engine, make_session_factory(db_engine), market_db_engine=market_engine
    )
    app.teardown_appcontext(close_db)
    _init_secrets(app, settings)

    _init_extensions(app)
    _register_blueprints(app)
    _register_template_helpers(app, settings)
    return app


def _init_secrets(app: Flask, settings: Settings) -> None:
    """The Fernet key for stored Kite secrets; a loose or malformed key stops the start."""
    from Webapp.broker.secrets import load_box
    from Webapp.web.kite_auth import install_log_redaction
    from Webapp.web.settings import BOX_KEY

    app.extensions[BOX_KEY] = load_box(settings)  # SecretKeyError is a SettingsError
    install_log_redaction()


def _init_extensions(app: Flask) -> None:
    # Importing registers the Socket.IO handlers; before init_app, so every app gets them.
    from Webapp.web import data_sockets, sockets  # noqa: F401
    from Webapp.web.auth import require_login
    from Webapp.web.extensions import csrf, limiter, login_manager, socketio

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"
    # The login gate runs before the CSRF check, so a stranger gets the login page.
    app.before_request(require_login)
    csrf.init_app(app)
    limiter.init_app(app)
    socketio.init_app(app, async_mode="threading", cors_allowed_origins=None)


def _register_blueprints(app: Flask) -> None:
    from Webapp.web import (
        auth,
        cli,
        dashboard,
        data,
        data_cli,
        health,
        kite_auth,
        settings,
        trading,
        users_admin,
    )

    for module in (auth, dashboard, trading, data, health, users_admin, settings, kite_auth):
        app.register_blueprint(module.bp)
    cli.register(app)
    data_cli.register(app)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return render_template("error.html", code=400, message=exc.description), 400

    for code, message in {
        403: "Your role cannot do this (viewers see but cannot act).",
        404: "No such page.",
        429: "Too many attempts; wait a minute and try again.",
    }.items():
        app.register_error_handler(
            code, lambda exc, code=code, message=message: _error_page(code, message)
        )


def _error_page(code: int, message: str):
    return render_template("error.html", code=code, message=message), code


def _register_template_helpers(app: Flask, settings: Settings) -> None:
    from Webapp.web.timefmt import ist

    app.add_template_filter(ist, "ist")

    @app.context_processor
    def globals_for_templates() -> dict[str, Any]:
        return {"trading_mode": settings.trading_mode.value}
