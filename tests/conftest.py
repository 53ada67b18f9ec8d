"""Shared fixtures: an app on a temporary SQLite DB, users, logins, PostgreSQL and chromium."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from Webapp import create_app
from Webapp.config.settings import load_settings
from Webapp.storage import migrate, users
from Webapp.storage.db import transaction

pytest_plugins = ["tests.kitesim.fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ADMIN_PASSWORD = "admin-password-1"
VIEWER_PASSWORD = "viewer-password-1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PG_URL = os.environ.get("LADDER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def required(kind: str) -> bool:
    """In CI (.ci/run sets these) a missing service fails the test instead of skipping it."""
    return os.environ.get(f"LADDER_REQUIRE_{kind}") == "1"


def skip_or_fail(kind: str, reason: str) -> None:
    if required(kind):
        pytest.fail(f"{reason} (required here: LADDER_REQUIRE_{kind}=1)")
    pytest.skip(reason)


@pytest.fixture
def settings(tmp_path):
    return load_settings(
        instance_path=tmp_path / "instance",
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        secret_key="test-secret-key-not-for-production",
        market_database_url="",
        trading_mode="paper",
        feed="sim",
        params_path=REPO_ROOT / "support_files" / "param.yaml",
    )


def with_settings(settings, **changes):
    """A copy of `settings` with `changes`, validated like the environment is (enums, paths)."""
    return load_settings(**{**settings.model_dump(), **changes})


@pytest.fixture
def app(settings):
    app = create_app({"TESTING": True}, settings=settings)
    migrate.upgrade(settings.resolved_database_url)
    yield app
    from Webapp.services import stop_services

    stop_services(app)
    app.extensions["ladder"].db_engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def add_user(app, username: str, password: str, role: str) -> None:
    with transaction(app.extensions["ladder"].sessions) as session:
        users.create_user(session, username, password, role)


@pytest.fixture
def admin(app):
    add_user(app, "alice", ADMIN_PASSWORD, "admin")
    return "alice"


@pytest.fixture
def viewer(app):
    add_user(app, "victor", VIEWER_PASSWORD, "viewer")
    return "victor"


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client, username: str, password: str):
    page = client.get("/login")
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_token(page.text)},
    )


@pytest.fixture
def admin_client(client, admin):
    assert login(client, admin, ADMIN_PASSWORD).status_code == 302
    return client


@pytest.fixture
def viewer_client(client, viewer):
    assert login(client, viewer, VIEWER_PASSWORD).status_code == 302
    return client


@pytest.fixture
def pg_url():
    """A real PostgreSQL; skipped with the reason when absent (failed in CI)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        skip_or_fail("PG", f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}")
    finally:
        engine.dispose()
    return PG_URL


@pytest.fixture
def pg_database(pg_url):
    """A fresh, empty PostgreSQL database for one test (dropped after), as a SQLAlchemy URL.

    Tests never share tables, so they can run in parallel and leave nothing behind.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ladder_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def migrated_market_store(url: str):
    """An OHLCVStore at `url`, migrated, disposed after."""
    from Webapp.market.ohlcv import OHLCVStore

    store = OHLCVStore(url)
    store.migrate()
    try:
        yield store
    finally:
        store.dispose()


@pytest.fixture
def market_store(tmp_path):
    """The OHLCV store on a fresh SQLite file."""
    with migrated_market_store(f"sqlite:///{tmp_path / 'market.db'}") as store:
        yield store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def any_market_store(request, tmp_path):
    """The OHLCV store on each backend: a fresh SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'market-any.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    with migrated_market_store(url) as store:
        yield store


@pytest.fixture(scope="session")
def chromium_path():
    if not Path(CHROMIUM).exists():
        skip_or_fail("BROWSER", "Debian's chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail("BROWSER", "the playwright package is not installed")
    return CHROMIUM
