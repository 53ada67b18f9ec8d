"""Alembic environment: migrates the market (OHLCV) database named by Ladder's settings."""

from logging.config import fileConfig

from alembic import context

from Webapp.config.settings import load_settings
from Webapp.market.ohlcv import make_market_engine

# Its own version table: the app and market schemas may live in one database.
VERSION_TABLE = "alembic_version_market"

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return config.attributes.get("url") or load_settings().resolved_market_database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=None, literal_binds=True, version_table=VERSION_TABLE
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_market_engine(_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection, target_metadata=None, version_table=VERSION_TABLE
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
