"""What the app holds per process: settings, the DB, and the running services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from Webapp.config.settings import Settings

if TYPE_CHECKING:
    from Webapp.execution.runtime import Runtime


@dataclass
class AppState:
    settings: Settings
    db_engine: Engine
    sessions: sessionmaker[Session]
    market_db_engine: Engine | None = None
    runtime: Runtime | None = None
    bridges: list = field(default_factory=list)


def app_state() -> AppState:
    return current_app.extensions["ladder"]


def db() -> Session:
    """The request's database session, closed when the request ends."""
    if "db_session" not in g:
        g.db_session = app_state().sessions()
    return g.db_session


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
