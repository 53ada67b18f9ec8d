"""The Fernet key: from FERNET_KEY or a 0600 instance file; refused when loose or malformed."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.fernet import Fernet

from tests.conftest import with_settings
from Webapp import create_app
from Webapp.broker.secrets import (
    KEY_FILE_NAME,
    SecretBox,
    SecretKeyError,
    SecretUnreadable,
    ensure_key_file,
    load_box,
)
from Webapp.config.settings import SettingsError


def test_key_file_is_created_once_with_mode_0600(tmp_path):
    first = ensure_key_file(tmp_path)
    second = ensure_key_file(tmp_path)
    assert first == second
    Fernet(first)  # a usable key
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600


def test_environment_key_is_used_and_no_file_is_written(settings):
    key = Fernet.generate_key().decode()
    box = load_box(with_settings(settings, fernet_key=key))
    assert Fernet(key.encode()).decrypt(box.encrypt("abc").encode()) == b"abc"
    assert not (settings.instance_path / KEY_FILE_NAME).exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_key_file_readable_by_others_is_refused_with_the_fix(tmp_path, mode):
    key = ensure_key_file(tmp_path)
    path = tmp_path / KEY_FILE_NAME
    os.chmod(path, mode)
    with pytest.raises(SecretKeyError) as caught:
        ensure_key_file(tmp_path)
    message = str(caught.value)
    assert str(path) in message and f"{mode:04o}" in message and "chmod 600" in message
    assert key.decode() not in message


def test_malformed_key_file_is_refused_without_echoing_it(settings):
    settings.instance_path.mkdir(parents=True)
    path = settings.instance_path / KEY_FILE_NAME
    path.write_text("not-a-fernet-key-but-secret-ish\n")
    os.chmod(path, 0o600)
    with pytest.raises(SecretKeyError) as caught:
        load_box(settings)
    assert "malformed" in str(caught.value) and str(path) in str(caught.value)
    assert "secret-ish" not in str(caught.value)


def test_malformed_environment_key_is_refused_naming_the_variable(settings):
    with pytest.raises(SecretKeyError) as caught:
        load_box(with_settings(settings, fernet_key="short-key-value"))
    assert "FERNET_KEY" in str(caught.value)
    assert "short-key-value" not in str(caught.value)


def test_app_refuses_to_start_with_a_loose_key_file(settings):
    ensure_key_file(settings.instance_path)
    os.chmod(settings.instance_path / KEY_FILE_NAME, 0o644)
    # A SettingsError: `python -m Webapp` and wsgi.py print it as "Ladder cannot start: ...".
    with pytest.raises(SettingsError, match="chmod 600"):
        create_app({"TESTING": True}, settings=settings)


def test_encrypted_value_holds_no_plaintext_and_decrypts_back():
    box = SecretBox(Fernet(Fernet.generate_key()))
    token = box.encrypt("my-api-secret")
    assert "my-api-secret" not in token
    assert box.decrypt(token) == "my-api-secret"


def test_decrypting_with_another_key_fails_without_the_value():
    token = SecretBox(Fernet(Fernet.generate_key())).encrypt("my-api-secret")
    other = SecretBox(Fernet(Fernet.generate_key()))
    with pytest.raises(SecretUnreadable) as caught:
        other.decrypt(token)
    assert token not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_neither_the_settings_nor_the_box_show_the_key(settings):
    key = Fernet.generate_key().decode()
    keyed = with_settings(settings, fernet_key=key)
    assert key not in repr(keyed) and key not in repr(load_box(keyed))
