"""Flask CLI commands: `flask users ...`, `flask params check`, `flask db upgrade`."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from Webapp.config.params import check_params_file
from Webapp.storage import audit, migrate, users
from Webapp.storage.db import transaction
from Webapp.storage.models import Role
from Webapp.web.appstate import AppState

users_cli = AppGroup("users", help="Manage user accounts.")
params_cli = AppGroup("params", help="Check param.yaml files.")
db_cli = AppGroup("db", help="App database schema (Alembic).")


def _state() -> AppState:
    from flask import current_app

    return current_app.extensions["ladder"]


def _new_password(generate: bool, prompt: str) -> str:
    if generate:
        return users.generate_password()
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.VIEWER.value)
@click.option("--generate", is_flag=True, help="Generate a random password and print it once.")
def create_user(username: str, role: str, generate: bool) -> None:
    """Create a user (asks for the password unless --generate)."""
    password = _new_password(generate, "Password")
    try:
        with transaction(_state().sessions) as session:
            users.create_user(session, username, password, role)
            audit.record(session, "cli", "user_created", username=username, role=role)
    except users.UserError as exc:
        _fail(str(exc))
    click.echo(f"Created {role} {username}.")
    if generate:
        click.echo(f"Password (shown once): {password}")


@users_cli.command("list")
def list_users() -> None:
    """List users with role and status."""
    with transaction(_state().sessions) as session:
        rows = users.list_users(session)
        for user in rows:
            status = "disabled" if user.disabled else "enabled"
            click.echo(f"{user.username:<24} {user.role:<8} {status}")
    if not rows:
        click.echo("No users yet.")


@users_cli.command("disable")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Enable the account again instead.")
def disable_user(username: str, enable: bool) -> None:
    """Disable (or --enable) an account; its sessions end at once."""
    try:
        with transaction(_state().sessions) as session:
            user = users.get_by_username(session, username)
            if user is None:
                raise users.UserError(f"no user {username!r}")
            users.set_disabled(session, user, not enable)
            action = "user_enabled" if enable else "user_disabled"
            audit.record(session, "cli", action, username=username)
    except users.UserError as exc:
        _fail(str(exc))
    click.echo(f"{username} {'enabled' if enable else 'disabled'}.")


@users_cli.command("set-password")
@click.argument("username")
@click.option("--generate", is_flag=True, help="Generate a random password and print it once.")
def set_password(username: str, generate: bool) -> None:
    """Set a user's password (ends that user's sessions)."""
    password = _new_password(generate, "New password")
    try:
        with transaction(_state().sessions) as session:
            user = users.get_by_username(session, username)
            if user is None:
                raise users.UserError(f"no user {username!r}")
            users.set_password(session, user, password)
            audit.record(session, "cli", "password_set", username=username)
    except users.UserError as exc:
        _fail(str(exc))
    click.echo(f"Password of {username} changed.")
    if generate:
        click.echo(f"Password (shown once): {password}")


@params_cli.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def check_params(path: str) -> None:
    """Validate a param.yaml; prints every error with its key path."""
    errors = check_params_file(path)
    if errors:
        click.echo(f"{path} is invalid:", err=True)
        for line in errors:
            click.echo(f"  {line}", err=True)
        sys.exit(1)
    click.echo(f"{path} is valid.")


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations to the app database."""
    migrate.upgrade(_state().settings.resolved_database_url)
    click.echo("App database is up to date.")


def register(app: Flask) -> None:
    for group in (users_cli, params_cli, db_cli):
        app.cli.add_command(group)
