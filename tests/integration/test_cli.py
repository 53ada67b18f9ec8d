"""`flask users ...`, `flask params check` and `flask db upgrade`."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT, login
from Webapp.storage import users

SHIPPED_PARAMS = REPO_ROOT / "support_files" / "param.yaml"


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_users_create_prompts_for_the_password_and_the_user_can_log_in(app, client):
    result = run(
        app,
        "users",
        "create",
        "carol",
        "--role",
        "admin",
        input="carols-password-1\ncarols-password-1\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created admin carol." in result.output
    assert "carols-password-1" not in result.output
    assert login(client, "carol", "carols-password-1").status_code == 302


def test_users_create_generate_prints_a_working_password_once(app, client):
    result = run(app, "users", "create", "dave", "--generate")
    assert result.exit_code == 0, result.output
    password = re.search(r"Password \(shown once\): (\S+)", result.output).group(1)
    assert login(client, "dave", password).status_code == 302


def test_users_create_refuses_a_duplicate_and_a_short_password(app):
    assert run(app, "users", "create", "erin", "--generate").exit_code == 0
    duplicate = run(app, "users", "create", "erin", "--generate")
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.output
    short = run(app, "users", "create", "frank", input="short\nshort\n")
    assert short.exit_code == 1
    assert "at least 10 characters" in short.output


def test_users_list_shows_role_and_status(app, admin, viewer):
    run(app, "users", "disable", viewer)
    result = run(app, "users", "list")
    assert result.exit_code == 0
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()}
    assert lines == {"alice": ["admin", "enabled"], "victor": ["viewer", "disabled"]}


def test_users_disable_blocks_login_and_enable_restores_it(app, client, viewer):
    from tests.conftest import VIEWER_PASSWORD

    assert run(app, "users", "disable", viewer).exit_code == 0
    assert login(client, viewer, VIEWER_PASSWORD).status_code == 401
    assert run(app, "users", "disable", viewer, "--enable").exit_code == 0
    assert login(client, viewer, VIEWER_PASSWORD).status_code == 302


def test_users_disable_refuses_the_last_admin(app, admin):
    result = run(app, "users", "disable", admin)
    assert result.exit_code == 1
    assert "last enabled admin" in result.output


def test_users_set_password_replaces_the_old_one(app, client, viewer):
    from tests.conftest import VIEWER_PASSWORD

    result = run(app, "users", "set-password", viewer, input="fresh-password-9\nfresh-password-9\n")
    assert result.exit_code == 0, result.output
    assert login(client, viewer, VIEWER_PASSWORD).status_code == 401
    assert login(client, viewer, "fresh-password-9").status_code == 302


def test_users_set_password_for_an_unknown_user_fails_clearly(app):
    result = run(app, "users", "set-password", "nobody", "--generate")
    assert result.exit_code == 1
    assert "no user 'nobody'" in result.output


def test_cli_user_changes_are_audited(app, viewer):
    from Webapp.storage import audit

    run(app, "users", "disable", viewer)
    with app.extensions["ladder"].sessions() as session:
        entry = audit.recent(session, 1)[0]
    assert (entry.actor, entry.action, entry.detail) == (
        "cli",
        "user_disabled",
        {"username": viewer},
    )


def test_params_check_accepts_the_shipped_file(app):
    result = run(app, "params", "check", str(SHIPPED_PARAMS))
    assert result.exit_code == 0
    assert "is valid" in result.output


def test_params_check_names_every_bad_key(app, tmp_path: Path):
    data = yaml.safe_load(SHIPPED_PARAMS.read_text())
    data["p1"]["sl_pct"] = -1
    data["gtt"]["surprise"] = 3
    bad = tmp_path / "param.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = run(app, "params", "check", str(bad))
    assert result.exit_code == 1
    assert "p1.sl_pct:" in result.output
    assert "gtt.surprise:" in result.output
    assert "Traceback" not in result.output


def test_db_upgrade_is_idempotent(app):
    first = run(app, "db", "upgrade")
    second = run(app, "db", "upgrade")
    assert first.exit_code == second.exit_code == 0
    with app.extensions["ladder"].sessions() as session:
        assert users.count_users(session) == 0
