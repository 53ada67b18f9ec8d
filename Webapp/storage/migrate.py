"""Applies the Alembic migrations under migrations/ to a database URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def _config(script_dir: Path, url: str) -> Config:
    cfg = Config(str(script_dir / "alembic.ini"))
    cfg.set_main_option("script_location", str(script_dir))
    cfg.attributes["url"] = url
    # Keep the app's own logging setup; alembic.ini's would replace it.
    cfg.attributes["configure_logging"] = False
    return cfg


def alembic_config(url: str) -> Config:
    return _config(MIGRATIONS_DIR, url)


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def upgrade_on(connection: Connection, revision: str = "head") -> None:
    """Migrate the database of an open connection (an in-memory one has no other)."""
    cfg = alembic_config("sqlite://")
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


# The market (OHLCV) database has its own environment and version table
# (alembic_version_market), so it may be a separate database or the app's own.
MARKET_MIGRATIONS_DIR = MIGRATIONS_DIR / "market"


def market_alembic_config(url: str) -> Config:
    return _config(MARKET_MIGRATIONS_DIR, url)


def upgrade_market(url: str, revision: str = "head") -> None:
    """Bring the market (OHLCV) database at `url` to `revision`."""
    command.upgrade(market_alembic_config(url), revision)
