"""Alembic environment: migrates the app database named by Ladder's settings."""

from logging.config import fileConfig

from alembic import context

from Webapp.config.settings import load_settings
from Webapp.storage import (
    paper_models,  # noqa: F401  (registers the paper_* tables)
    trading_models,  # noqa: F401  (ladders, trades, orders, gtts, params)
)
from Webapp.storage.db import make_engine
from Webapp.storage.models import Base, UTCDateTime

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _render_item(type_, obj, autogen_context):
    """Write UTCDateTime as plain sa.DateTime: migrations must not import model code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Autogenerate ignores tables the app's models don't own (the market schema's ohlcv,
    alembic_version_market) when both schemas share one database."""
    return not (type_ == "table" and reflected and compare_to is None)


def _url() -> str:
    return config.attributes.get("url") or load_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, render_as_batch=True, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def _migrate(connection) -> None:
    # batch mode: SQLite can only alter a table by copying it.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        render_item=_render_item,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:  # an in-memory database lives only on its own connection
        _migrate(given)
        return
    engine = make_engine(_url())
    with engine.connect() as connection:
        _migrate(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
