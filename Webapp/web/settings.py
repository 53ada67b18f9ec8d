"""Admin settings page: the Kite Connect app's api key and secret, stored encrypted."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from Webapp.broker import kite_session
from Webapp.broker.secrets import SecretBox
from Webapp.storage import audit
from Webapp.web.appstate import db
from Webapp.web.auth import admin_required, client_addr
from Webapp.web.forms import KiteCredentialsForm

bp = Blueprint("settings", __name__, url_prefix="/settings")

BOX_KEY = "ladder_secrets"  # app.extensions key of the instance's SecretBox


def secret_box() -> SecretBox:
    return current_app.extensions[BOX_KEY]


def _render(form: KiteCredentialsForm, status: int = 200):
    session = db()
    return (
        render_template(
            "settings.html",
            form=form,
            secret_stored=kite_session.has_api_secret(session),
            token=kite_session.token_status(session, kite_session.utc_now()),
        ),
        status,
    )


@bp.get("/")
@admin_required
def index():
    form = KiteCredentialsForm(data={"api_key": kite_session.saved_api_key(db(), secret_box())})
    return _render(form)


@bp.post("/")
@admin_required
def save():
    form = KiteCredentialsForm()
    if not form.validate_on_submit():
        return _render(form, 400)
    session = db()
    try:
        change = kite_session.save_credentials(
            session,
            secret_box(),
            form.api_key.data,
            form.api_secret.data,
            current_user.username,
            kite_session.utc_now(),
        )
    except ValueError as exc:
        form.api_secret.errors.append(str(exc))
        return _render(form, 400)
    # Which fields changed, never their values.
    audit.record(
        session,
        current_user.username,
        "kite_credentials_saved",
        client_addr(),
        api_key_changed=change.api_key_changed,
        api_secret_changed=change.api_secret_changed,
        token_cleared=change.token_cleared,
    )
    session.commit()
    message = "Kite credentials saved."
    if change.token_cleared:
        message += " The api key changed, so the Kite session ended: log in to Kite again."
    flash(message, "success")
    return redirect(url_for("settings.index"))
