"""Builds the broker TRADING_MODE names: the paper account in the app DB, or the Kite account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from Webapp.broker.kite_session import StoredKite
from Webapp.broker.paper import PaperBroker, PriceSource
from Webapp.broker.secrets import load_box
from Webapp.config.params import Params
from Webapp.config.settings import Settings
from Webapp.storage.db import make_engine, make_session_factory

if TYPE_CHECKING:
    from Webapp.broker.kite import KiteBroker

PAPER_ACCOUNT = "paper"


class BrokerConfigError(Exception):
    """The broker cannot be built as configured; the message says what to set."""


class KiteCredentials(Protocol):
    """The api key and the day's access token ("" when there is none yet)."""

    def api_key(self) -> str: ...

    def access_token(self) -> str: ...


class KiteCredentialSource:
    """The api key and day's token: stored (Settings page, /kite/login) first, else the env."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session] | None = None) -> None:
        """`sessions`: the app DB's session factory (the runtime's); else one is opened."""
        self._settings = settings
        if sessions is None:
            sessions = make_session_factory(make_engine(settings.resolved_database_url))
        self._stored = StoredKite(sessions, load_box(settings))

    def __repr__(self) -> str:
        return "<KiteCredentialSource>"

    def api_key(self) -> str:
        return self._stored.api_key() or self._settings.kite_api_key

    def access_token(self) -> str:
        return self._stored.access_token() or self._settings.kite_access_token


def utc_now() -> datetime:
    return datetime.now(UTC)


def paper_broker(
    settings: Settings,
    params: Params,
    sessions: sessionmaker[Session],
    ltp: PriceSource,
    clock: Callable[[], datetime] = utc_now,
) -> PaperBroker:
    """The paper account in the app DB; it continues where the last process left it.

    PAPER_STARTING_CASH only applies when the account is opened for the first time.
    """
    return PaperBroker(
        sessions,
        params,
        clock=clock,
        starting_cash=settings.paper_starting_cash,
        ltp=ltp,
        account=PAPER_ACCOUNT,
    )


def kite_broker(settings: Settings, credentials: KiteCredentials, bus: Any) -> KiteBroker:
    """The Kite account; without an access token yet it starts paused until a Kite login.

    Paused means `status().token_valid` is False with "log in to Kite" as the last error,
    and every call is refused unsent; `set_access_token` (after /kite/callback) resumes it.
    """
    # Imported here: kiteconnect loads Twisted, which paper mode never needs.
    from Webapp.broker.kite import KiteBroker

    api_key = credentials.api_key()
    if not api_key:
        raise BrokerConfigError(
            "TRADING_MODE=live needs the Kite api key: save it on the Settings page (start once "
            "with TRADING_MODE=paper and FEED=sim to reach it) or set KITE_API_KEY"
        )
    return KiteBroker(
        api_key, credentials.access_token(), root=settings.kite_rest_root or None, bus=bus
    )
