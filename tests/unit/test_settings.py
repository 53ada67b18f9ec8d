"""Settings from the environment; the instance SECRET_KEY; IST display."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

import pytest

from Webapp.config.settings import SettingsError, ensure_secret_key, load_settings
from Webapp.web.timefmt import ist


def test_defaults_are_paper_mode_sim_feed_sqlite_on_localhost(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "TRADING_MODE", "FEED", "HOST", "PORT", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(instance_path=tmp_path)
    assert settings.trading_mode == "paper"
    assert settings.feed == "sim"
    assert settings.host == "127.0.0.1"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'ladder.db'}"


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("TRADING_MODE", "live")
    monkeypatch.setenv("FEED", "replay")
    monkeypatch.setenv("DATABASE_URL", "sqlite:////srv/ladder/app.db")
    settings = load_settings()
    assert (settings.trading_mode, settings.feed) == ("live", "replay")
    assert settings.resolved_database_url == "sqlite:////srv/ladder/app.db"


@pytest.mark.parametrize(
    ("name", "value"),
    [("TRADING_MODE", "yolo"), ("FEED", "carrier-pigeon"), ("PORT", "http"), ("PORT", "70000")],
)
def test_bad_environment_value_names_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert name in str(caught.value)


def test_secret_key_is_generated_once_with_mode_0600(tmp_path):
    first = ensure_secret_key(tmp_path)
    second = ensure_secret_key(tmp_path)
    assert first == second and len(first) >= 64
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


def test_secret_key_is_not_shown_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "super-secret-value")
    assert "super-secret-value" not in repr(load_settings())


def test_times_show_in_ist():
    assert ist(datetime(2026, 11, 20, 3, 45, tzinfo=UTC)) == "2026-11-20 09:15:00"


def test_naive_times_are_refused_on_screen():
    with pytest.raises(ValueError):
        ist(datetime(2026, 11, 20, 3, 45))
