"""The Kite login: api key and secret, and the day's access token, stored encrypted."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from Webapp.broker.secrets import SecretBox, SecretUnreadable
from Webapp.storage.models import KiteCredentials

log = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
TOKEN_ENDS_AT = time(6, 0)  # Kite expires every access token at 06:00 IST
ROW_ID = 1  # one Kite account per instance


class TokenState(StrEnum):
    MISSING = "missing"
    VALID = "valid"
    EXPIRED = "expired"


@dataclass(frozen=True)
class TokenStatus:
    """What the dashboard shows about the Kite session; holds no secret."""

    state: TokenState
    expires_at: datetime | None = None  # aware UTC
    kite_user_id: str | None = None
    credentials_saved: bool = False


@dataclass(frozen=True)
class CredentialsChange:
    """Which values a save changed (for the audit log, which never holds the values)."""

    api_key_changed: bool
    api_secret_changed: bool
    token_cleared: bool


class KiteLoginError(Exception):
    """The login could not finish; the message is for a person and holds no secret."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def token_expiry(login_time: datetime) -> datetime:
    """The first 06:00 IST strictly after `login_time`, in UTC."""
    local = login_time.astimezone(IST)
    ends = datetime.combine(local.date(), TOKEN_ENDS_AT, tzinfo=IST)
    if ends <= local:
        ends += timedelta(days=1)
    return ends.astimezone(UTC)


def _row(session: Session) -> KiteCredentials | None:
    return session.get(KiteCredentials, ROW_ID)


def save_credentials(
    session: Session,
    box: SecretBox,
    api_key: str,
    api_secret: str | None,
    actor: str,
    now: datetime,
) -> CredentialsChange:
    """Store the api key and (when given) the secret; a new api key ends the stored session.

    A blank `api_secret` keeps the stored one, since the form never shows it. The
    caller commits.
    """
    api_key, api_secret = api_key.strip(), (api_secret or "").strip()
    if not api_key:
        raise ValueError("the api key is required")
    row = _row(session)
    if row is None:
        if not api_secret:
            raise ValueError("the api secret is required the first time")
        row = KiteCredentials(id=ROW_ID, api_key_enc="", api_secret_enc="", updated_by=actor)
        session.add(row)
        old_key = old_secret = None
    else:
        old_key, old_secret = _decrypt_or_none(box, row.api_key_enc), None
        if api_secret:
            old_secret = _decrypt_or_none(box, row.api_secret_enc)
    key_changed = api_key != old_key
    secret_changed = bool(api_secret) and api_secret != old_secret
    row.api_key_enc = box.encrypt(api_key)
    if api_secret:
        row.api_secret_enc = box.encrypt(api_secret)
    # The token belongs to the old app: keeping it would pair it with the wrong key.
    token_cleared = key_changed and row.access_token_enc is not None
    if key_changed:
        _clear_token(row)
    row.updated_at, row.updated_by = now, actor
    return CredentialsChange(key_changed, secret_changed, token_cleared)


def _clear_token(row: KiteCredentials) -> None:
    row.access_token_enc = None
    row.token_expires_at = None
    row.login_time = None
    row.kite_user_id = None


def _decrypt_or_none(box: SecretBox, token: str | None) -> str | None:
    if not token:
        return None
    try:
        return box.decrypt(token)
    except SecretUnreadable:
        return None


def saved_api_key(session: Session, box: SecretBox) -> str | None:
    """The stored api key (not a secret: it is part of Kite's login URL), or None."""
    row = _row(session)
    return None if row is None else _decrypt_or_none(box, row.api_key_enc)


def has_api_secret(session: Session) -> bool:
    row = _row(session)
    return row is not None and bool(row.api_secret_enc)


def token_status(session: Session, now: datetime) -> TokenStatus:
    row = _row(session)
    if row is None:
        return TokenStatus(TokenState.MISSING)
    if not row.access_token_enc or row.token_expires_at is None:
        return TokenStatus(TokenState.MISSING, credentials_saved=True)
    state = TokenState.VALID if now < row.token_expires_at else TokenState.EXPIRED
    return TokenStatus(state, row.token_expires_at, row.kite_user_id, credentials_saved=True)


def valid_access_token(session: Session, box: SecretBox, now: datetime) -> str | None:
    """The stored access token while it is valid, else None."""
    row = _row(session)
    if row is None or not row.access_token_enc or row.token_expires_at is None:
        return None
    if now >= row.token_expires_at:
        return None
    return _decrypt_or_none(box, row.access_token_enc)


def complete_login(
    session: Session, box: SecretBox, request_token: str, rest_root: str, now: datetime
) -> TokenStatus:
    """Exchange Kite's request token for the day's access token and store it encrypted.

    The caller commits. Raises KiteLoginError with Kite's own reason on failure.
    """
    from kiteconnect import KiteConnect
    from kiteconnect.exceptions import KiteException
    from requests import RequestException

    row = _row(session)
    api_key = None if row is None else _decrypt_or_none(box, row.api_key_enc)
    api_secret = None if row is None else _decrypt_or_none(box, row.api_secret_enc)
    if not api_key or not api_secret:
        raise KiteLoginError("save the Kite api key and secret on the Settings page first")
    secrets_in_play = (request_token, api_secret)
    kite = KiteConnect(api_key, root=rest_root or None)
    try:
        reply = kite.generate_session(request_token, api_secret=api_secret)
        access_token = reply["access_token"]
    except KiteException as exc:
        raise KiteLoginError(_scrub(f"Kite refused the login: {exc}", secrets_in_play)) from None
    except RequestException as exc:
        reason = _scrub(f"{type(exc).__name__}: {exc}", secrets_in_play)
        raise KiteLoginError(f"Kite could not be reached: {reason}") from None
    except (KeyError, TypeError, ValueError) as exc:
        reason = _scrub(f"{type(exc).__name__}", secrets_in_play)
        raise KiteLoginError(f"Kite's reply to the login was not understood ({reason})") from None
    login_time = _login_time(reply.get("login_time"), now)
    row.access_token_enc = box.encrypt(access_token)
    row.login_time = login_time
    row.token_expires_at = token_expiry(login_time)
    row.kite_user_id = str(reply.get("user_id") or "")[:32] or None
    row.updated_at = now
    log.info("Kite login complete for %s", row.kite_user_id or "an unnamed user")
    return token_status(session, now)


def _login_time(value: object, now: datetime) -> datetime:
    """Kite sends its login time in IST without a zone; anything odd means `now`."""
    if isinstance(value, datetime):
        stamped = value if value.tzinfo else value.replace(tzinfo=IST)
        return stamped.astimezone(UTC)
    return now


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def postback_checksum_ok(
    session: Session, box: SecretBox, order_id: str, order_timestamp: str, checksum: str
) -> bool | None:
    """Kite signs a postback with sha256(order_id + order_timestamp + api_secret).

    None when no secret is stored (nothing to check against).
    """
    row = _row(session)
    api_secret = None if row is None else _decrypt_or_none(box, row.api_secret_enc)
    if not api_secret:
        return None
    expected = hashlib.sha256((order_id + order_timestamp + api_secret).encode()).hexdigest()
    return hmac.compare_digest(expected.encode(), checksum.encode())


class StoredKite:
    """The stored api key and token for code outside a request (the feed, the broker)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._clock = clock

    def __repr__(self) -> str:
        return "<StoredKite>"

    def api_key(self) -> str | None:
        return self._read(lambda session: saved_api_key(session, self._box))

    def access_token(self) -> str | None:
        return self._read(lambda session: valid_access_token(session, self._box, self._clock()))

    def _read(self, query: Callable[[Session], str | None]) -> str | None:
        try:
            with self._sessions() as session:
                return query(session)
        except SQLAlchemyError as exc:
            # Before the first migration the table is missing: nothing stored yet, no alarm.
            level = logging.WARNING if self._table_exists() else logging.DEBUG
            log.log(level, "reading the stored Kite credentials failed: %s", type(exc).__name__)
            return None

    def _table_exists(self) -> bool:
        try:
            with self._sessions() as session:
                return inspect(session.connection()).has_table(KiteCredentials.__tablename__)
        except SQLAlchemyError:
            return True  # the database itself fails: worth a warning


def access_token_provider(stored: StoredKite, fallback: str = "") -> Callable[[], str]:
    """A provider for the feed and broker: the stored valid token, else `fallback` (env)."""

    def provide() -> str:
        return stored.access_token() or fallback

    return provide
