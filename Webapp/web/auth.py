"""Login, logout and own-password change; the gate that makes every page need a session."""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from Webapp.storage import audit, users
from Webapp.storage.models import Role, User
from Webapp.web.appstate import db
from Webapp.web.extensions import limiter, login_manager
from Webapp.web.forms import ChangePasswordForm, LoginForm

bp = Blueprint("auth", __name__)

# Kite's postback carries no session: its checksum (api_secret) is its login.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "health.healthz", "static", "kite_auth.postback"})


@dataclass(frozen=True)
class SessionUser:
    """The logged-in user as Flask-Login sees it.

    The session id carries the password-change time, so changing a password
    (or disabling the account) ends every other session of that user.
    """

    id: int
    username: str
    role: str
    stamp: int

    is_authenticated = True
    is_active = True
    is_anonymous = False

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    def get_id(self) -> str:
        return f"{self.id}:{self.stamp}"

    @classmethod
    def of(cls, user: User) -> SessionUser:
        return cls(user.id, user.username, user.role, _stamp(user))


def _stamp(user: User) -> int:
    return int(user.password_changed_at.timestamp() * 1000)


@login_manager.user_loader
def load_user(session_id: str) -> SessionUser | None:
    user_id, _, stamp = session_id.partition(":")
    if not user_id.isdigit() or not stamp.isdigit():
        return None
    user = db().get(User, int(user_id))
    if user is None or user.disabled or _stamp(user) != int(stamp):
        return None
    return SessionUser.of(user)


def wants_fragment() -> bool:
    """htmx, fetch and JSON callers get a status code instead of a redirect."""
    return bool(request.headers.get("HX-Request")) or request.accept_mimetypes.best == (
        "application/json"
    )


@login_manager.unauthorized_handler
def unauthorized():
    if wants_fragment():
        # htmx follows HX-Redirect; JSON callers read the body.
        return {"error": "login required"}, 401, {"HX-Redirect": url_for("auth.login")}
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def require_login() -> object | None:
    """before_request: everything but PUBLIC_ENDPOINTS needs a session (safe by default)."""
    if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    # Unknown URLs too: strangers are not told which URLs exist.
    return login_manager.unauthorized()


def admin_required(view):
    """Viewers see but cannot act."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def client_addr() -> str | None:
    return request.remote_addr


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect after login is a phishing aid.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.extensions["ladder"].settings.login_rate_limit,
    methods=["POST"],
    error_message="Too many login attempts from your address; wait a minute.",
)
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    if form.validate_on_submit():
        session = db()
        user = users.authenticate(session, form.username.data, form.password.data)
        audit.record(
            session,
            actor=form.username.data[:64],
            action="login" if user else "login_failed",
            client_addr=client_addr(),
        )
        session.commit()
        if user is not None:
            login_user(SessionUser.of(user))
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong username or password, or the account is disabled.", "error")
        return render_template("login.html", form=form), 401
    return render_template("login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        session = db()
        user = session.get(User, current_user.id)
        try:
            users.change_own_password(
                session, user, form.current_password.data, form.new_password.data
            )
        except users.UserError as exc:
            form.current_password.errors.append(str(exc))
        else:
            audit.record(session, current_user.username, "password_changed", client_addr())
            session.commit()
            # The stamp changed: log in again under the new one, ending other sessions.
            login_user(SessionUser.of(user))
            flash("Password changed.", "success")
            return redirect(url_for("dashboard.index"))
    return render_template("password.html", form=form)
