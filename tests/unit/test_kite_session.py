"""Stored Kite credentials: encrypted rows, the 06:00 IST expiry, token status and the provider."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from Webapp.broker import kite_session
from Webapp.broker.kite_session import StoredKite, TokenState, access_token_provider
from Webapp.broker.secrets import SecretBox
from Webapp.storage import migrate
from Webapp.storage.db import make_engine, make_session_factory, transaction
from Webapp.storage.models import KiteCredentials

IST = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # 09:30 IST


def at_ist(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=IST)


@pytest.fixture
def box():
    return SecretBox(Fernet(Fernet.generate_key()))


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def store_token(sessions, box, token: str, login_time: datetime) -> None:
    """What complete_login writes after Kite's reply (the exchange is tested with kitesim)."""
    with transaction(sessions) as session:
        row = session.get(KiteCredentials, kite_session.ROW_ID)
        row.access_token_enc = box.encrypt(token)
        row.login_time = login_time
        row.token_expires_at = kite_session.token_expiry(login_time)
        row.kite_user_id = "AB1234"


def save(sessions, box, api_key: str = "key1", api_secret: str = "secret1"):  # noqa: S107
    with transaction(sessions) as session:
        return kite_session.save_credentials(session, box, api_key, api_secret, "alice", NOW)


@pytest.mark.parametrize(
    ("login", "expires"),
    [
        (at_ist(20, 9, 15), at_ist(21, 6)),  # a morning login lasts until tomorrow 06:00
        (at_ist(20, 23, 59), at_ist(21, 6)),
        (at_ist(21, 5, 59), at_ist(21, 6)),  # before 06:00: only until this morning
        (at_ist(21, 6, 0), at_ist(22, 6)),  # at 06:00 exactly: the next one
    ],
)
def test_token_expires_at_the_next_0600_ist_after_login(login, expires):
    assert kite_session.token_expiry(login.astimezone(UTC)) == expires.astimezone(UTC)


def test_credentials_are_stored_encrypted(sessions, box):
    save(sessions, box, "my_api_key", "my_api_secret")
    with sessions() as session:
        raw = " ".join(
            str(v) for v in session.execute(text("SELECT * FROM kite_credentials")).one()
        )
        assert "my_api_key" not in raw and "my_api_secret" not in raw
        assert kite_session.saved_api_key(session, box) == "my_api_key"
        assert kite_session.has_api_secret(session)
        assert "my_api" not in repr(session.get(KiteCredentials, 1))


def test_first_save_needs_the_secret(sessions, box):
    with pytest.raises(ValueError, match="secret is required"):
        save(sessions, box, "key1", "")


def test_blank_secret_keeps_the_stored_one(sessions, box):
    save(sessions, box, "key1", "secret1")
    change = save(sessions, box, "key1", "")
    assert (change.api_key_changed, change.api_secret_changed) == (False, False)
    with sessions() as session:
        ok = kite_session.postback_checksum_ok(
            session, box, "1", "t", hashlib.sha256(b"1tsecret1").hexdigest()
        )
    assert ok is True


def test_a_new_api_key_ends_the_stored_session(sessions, box):
    save(sessions, box)
    store_token(sessions, box, "tok", NOW)
    change = save(sessions, box, "key2", "")
    assert change.api_key_changed and change.token_cleared
    with sessions() as session:
        assert kite_session.token_status(session, NOW).state is TokenState.MISSING


def test_a_new_secret_for_the_same_key_keeps_the_session(sessions, box):
    save(sessions, box)
    store_token(sessions, box, "tok", NOW)
    change = save(sessions, box, "key1", "secret2")
    assert change.api_secret_changed and not change.token_cleared
    with sessions() as session:
        assert kite_session.valid_access_token(session, box, NOW) == "tok"


def test_token_status_goes_missing_valid_expired(sessions, box):
    with sessions() as session:
        assert kite_session.token_status(session, NOW) == kite_session.TokenStatus(
            TokenState.MISSING
        )
    save(sessions, box)
    with sessions() as session:
        status = kite_session.token_status(session, NOW)
        assert (status.state, status.credentials_saved) == (TokenState.MISSING, True)
    store_token(sessions, box, "tok", NOW)
    expires = at_ist(21, 6).astimezone(UTC)
    with sessions() as session:
        valid = kite_session.token_status(session, expires - timedelta(seconds=1))
        expired = kite_session.token_status(session, expires)
    assert (valid.state, valid.expires_at, valid.kite_user_id) == (
        TokenState.VALID,
        expires,
        "AB1234",
    )
    assert expired.state is TokenState.EXPIRED


def test_expired_token_is_never_handed_out(sessions, box):
    save(sessions, box)
    store_token(sessions, box, "tok", NOW)
    expires = at_ist(21, 6).astimezone(UTC)
    with sessions() as session:
        assert kite_session.valid_access_token(session, box, expires - timedelta(minutes=1))
        assert kite_session.valid_access_token(session, box, expires) is None


def test_postback_checksum_is_sha256_of_order_id_timestamp_and_secret(sessions, box):
    with sessions() as session:
        assert kite_session.postback_checksum_ok(session, box, "1", "t", "x") is None
    save(sessions, box, "key1", "secret1")
    good = hashlib.sha256(b"220101000000012026-11-20 09:30:00secret1").hexdigest()
    other = good[:-1] + ("1" if good.endswith("0") else "0")
    with sessions() as session:
        results = [
            kite_session.postback_checksum_ok(
                session, box, "22010100000001", "2026-11-20 09:30:00", checksum
            )
            for checksum in (good, other, "")
        ]
    assert results == [True, False, False]


def test_provider_prefers_the_stored_valid_token_then_the_environment(sessions, box):
    clock = [NOW]
    stored = StoredKite(sessions, box, clock=lambda: clock[0])
    provide = access_token_provider(stored, fallback="env-token")
    assert provide() == "env-token"
    save(sessions, box)
    store_token(sessions, box, "stored-token", NOW)
    assert (provide(), stored.api_key()) == ("stored-token", "key1")
    clock[0] = at_ist(21, 6).astimezone(UTC)
    assert provide() == "env-token"


def test_provider_before_the_first_migration_reads_nothing_quietly(tmp_path, box, caplog):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    stored = StoredKite(make_session_factory(engine), box)
    with caplog.at_level(logging.DEBUG):
        assert stored.access_token() is None and stored.api_key() is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    engine.dispose()
