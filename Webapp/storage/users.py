"""User accounts: argon2id password hashes, roles, the disabled flag."""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from Webapp.storage.models import Role, User, utc_now

# argon2-cffi's defaults are argon2id with RFC 9106's low-memory profile.
_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10
# Verifying against this keeps a login for an unknown user as slow as a real one.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
_USERNAME = re.compile(r"[A-Za-z0-9._]{1,64}")


class UserError(ValueError):
    """A user operation was refused; the message says why."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def get_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def create_user(session: Session, username: str, password: str, role: str) -> User:
    username = username.strip()
    if not _USERNAME.fullmatch(username):
        raise UserError("username must be 1-64 letters, digits, '.' or '_'")
    if role not in {r.value for r in Role}:
        raise UserError(f"role must be one of: {', '.join(r.value for r in Role)}")
    if get_by_username(session, username) is not None:
        raise UserError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def authenticate(
    session: Session, username: str, password: str, now: datetime | None = None
) -> User | None:
    """The user when the password matches and the account is enabled, else None."""
    user = get_by_username(session, username)
    if user is None:
        _verify(_DUMMY_HASH, password)
        return None
    if not _verify(user.password_hash, password) or user.disabled:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = now or utc_now()
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def set_password(session: Session, user: User, new_password: str) -> None:
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utc_now()


def change_own_password(session: Session, user: User, current: str, new_password: str) -> None:
    if not _verify(user.password_hash, current):
        raise UserError("current password is wrong")
    if current == new_password:
        raise UserError("the new password must differ from the current one")
    set_password(session, user, new_password)


def set_disabled(session: Session, user: User, disabled: bool) -> None:
    if disabled and user.is_admin:
        enabled_admins = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN.value, User.disabled.is_(False))
        )
        if enabled_admins <= 1 and not user.disabled:
            raise UserError("refused: this is the last enabled admin")
    user.disabled = disabled
