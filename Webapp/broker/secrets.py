"""The Fernet key for secrets at rest (env var, or an instance key file with mode 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from Webapp.config.settings import Settings, SettingsError

KEY_ENV = "FERNET_KEY"
KEY_FILE_NAME = "fernet.key"


class SecretKeyError(SettingsError):
    """The Fernet key cannot be used; the message says what to fix and never holds the key."""


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted (another key, or a damaged value)."""


class SecretBox:
    """Encrypts and decrypts short strings; errors never carry the plaintext or the key."""

    def __init__(self, fernet: Fernet) -> None:
        self._fernet = fernet

    def __repr__(self) -> str:
        return "<SecretBox>"

    def encrypt(self, plaintext: str) -> str:
        if not isinstance(plaintext, str):
            raise TypeError("only text secrets are encrypted")
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError, AttributeError):
            raise SecretUnreadable(
                "a stored secret cannot be decrypted with this Fernet key "
                "(was the key changed? save the Kite credentials again)"
            ) from None


def load_box(settings: Settings) -> SecretBox:
    """The box for this instance: FERNET_KEY when set, else the instance key file."""
    if settings.fernet_key:
        return SecretBox(_fernet(settings.fernet_key.encode(), f"{KEY_ENV} (environment)"))
    key = ensure_key_file(settings.instance_path)
    return SecretBox(_fernet(key, str(settings.instance_path / KEY_FILE_NAME)))


def ensure_key_file(instance_path: Path) -> bytes:
    """The key in `instance_path/fernet.key`, created once with mode 0600; refused if looser."""
    instance_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = instance_path / KEY_FILE_NAME
    try:
        # O_EXCL: two processes starting at once must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(Fernet.generate_key() + b"\n")
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
    try:
        info = path.stat()
    except OSError as exc:
        raise SecretKeyError(f"cannot read the Fernet key file {path}: {exc.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise SecretKeyError(
            f"the Fernet key file {path} has mode {mode:04o}: group or others can read it; "
            f"run `chmod 600 {path}` (and check who read it)"
        )
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise SecretKeyError(f"cannot read the Fernet key file {path}: {exc.strerror}") from None


def _fernet(key: bytes, source: str) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        # Never echo the value: a malformed key may still be most of a real one.
        raise SecretKeyError(
            f"the Fernet key in {source} is malformed: it must be 32 url-safe base64-encoded "
            "bytes (make one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`)"
        ) from None
