"""Admin page for user accounts: list, create, disable and enable."""

from __future__ import annotations

from flask import Blueprint, abort, flash, render_template
from flask_login import current_user

from Webapp.storage import audit, users
from Webapp.storage.models import User
from Webapp.web.appstate import db
from Webapp.web.auth import admin_required, client_addr
from Webapp.web.forms import ActionForm, CreateUserForm

bp = Blueprint("users", __name__, url_prefix="/users")


def _render(form: CreateUserForm | None = None, status: int = 200):
    return (
        render_template(
            "users.html",
            users=users.list_users(db()),
            form=form or CreateUserForm(),
            action_form=ActionForm(),
        ),
        status,
    )


def _render_table(status: int = 200):
    return (
        render_template(
            "partials/users_table.html", users=users.list_users(db()), action_form=ActionForm()
        ),
        status,
    )


@bp.get("/")
@admin_required
def index():
    return _render()


@bp.post("/")
@admin_required
def create():
    form = CreateUserForm()
    if not form.validate_on_submit():
        return _render(form, 400)
    session = db()
    try:
        user = users.create_user(session, form.username.data, form.password.data, form.role.data)
    except users.UserError as exc:
        form.username.errors.append(str(exc))
        return _render(form, 400)
    audit.record(
        session,
        current_user.username,
        "user_created",
        client_addr(),
        username=user.username,
        role=user.role,
    )
    session.commit()
    flash(f"User {user.username} ({user.role}) created.", "success")
    return _render()


@bp.post("/<int:user_id>/disabled/<any(on, off):state>")
@admin_required
def set_disabled(user_id: int, state: str):
    """htmx: swaps the users table after enabling or disabling an account."""
    if not ActionForm().validate_on_submit():
        abort(400)
    session = db()
    user = session.get(User, user_id) or abort(404)
    try:
        users.set_disabled(session, user, state == "on")
    except users.UserError as exc:
        flash(str(exc), "error")
        return _render_table(409)
    audit.record(
        session,
        current_user.username,
        "user_disabled" if state == "on" else "user_enabled",
        client_addr(),
        username=user.username,
    )
    session.commit()
    return _render_table()
