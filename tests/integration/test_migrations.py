"""The Alembic migrations build exactly the models' schema, in WAL mode, and roll back cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from Webapp.storage import (
    migrate,
    paper_models,  # noqa: F401  (the paper_* tables are models too)
    trading_models,  # noqa: F401  (ladders, trades, orders, gtts, param_versions)
)
from Webapp.storage.db import make_engine
from Webapp.storage.models import Base


def test_migrated_schema_matches_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_app_database_runs_in_wal_mode_with_full_sync(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    with make_engine(url).connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_downgrade_to_base_removes_every_table(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    command.downgrade(migrate.alembic_config(url), "base")
    tables = set(inspect(make_engine(url)).get_table_names())
    assert tables == {"alembic_version"}


def test_app_and_market_schemas_can_share_one_database_without_drift(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'both.db'}"
    migrate.upgrade(url)
    migrate.upgrade_market(url)
    command.check(migrate.alembic_config(url))  # raises if autogenerate sees any difference
    assert "ohlcv" in inspect(make_engine(url)).get_table_names()
