"""Flask-WTF forms (CSRF included) for login, passwords, user admin, Kite credentials, trading."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import AnyOf, DataRequired, EqualTo, Length, Optional, Regexp

from Webapp.storage.users import MIN_PASSWORD_LENGTH


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField(
        "New password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256)]
    )
    confirm = PasswordField(
        "Repeat new password",
        validators=[DataRequired(), EqualTo("new_password", message="the passwords differ")],
    )


class CreateUserForm(FlaskForm):
    username = StringField(
        "Username",
        validators=[
            DataRequired(),
            Regexp(r"^[A-Za-z0-9._]{1,64}$", message="letters, digits, '.' or '_' (max 64)"),
        ],
    )
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256)]
    )
    role = SelectField("Role", choices=["viewer", "admin"])


class ActionForm(FlaskForm):
    """A bare form for buttons that only need the CSRF token."""


class KiteCredentialsForm(FlaskForm):
    """The Kite Connect app's api key and secret; the secret field is never pre-filled."""

    api_key = StringField(
        "API key",
        validators=[
            DataRequired(),
            Regexp(r"^[A-Za-z0-9_-]{1,64}$", message="letters, digits, '_' or '-' (max 64)"),
        ],
    )
    # Blank keeps the stored secret; the page never shows it, not even partly.
    api_secret = PasswordField(
        "API secret",
        validators=[
            Optional(),
            Regexp(r"^[A-Za-z0-9_-]{1,128}$", message="letters, digits, '_' or '-' (max 128)"),
        ],
    )


EMERGENCY_CONFIRMATION = "EMERGENCY"


class EmergencyStopForm(FlaskForm):
    """The emergency stop: the page's confirm dialog sends `confirm`; a stray POST lacks it."""

    confirm = StringField(
        "Type EMERGENCY to confirm",
        validators=[
            DataRequired(message=f"type {EMERGENCY_CONFIRMATION} to confirm"),
            AnyOf([EMERGENCY_CONFIRMATION], message=f"type {EMERGENCY_CONFIRMATION} to confirm"),
        ],
    )
