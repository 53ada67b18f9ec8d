"""Process settings read from environment variables, with safe defaults."""

from __future__ import annotations

import os
import secrets
from datetime import date
from enum import StrEnum
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INSTANCE_PATH = REPO_ROOT / "instance"
DEFAULT_PARAMS_PATH = REPO_ROOT / "support_files" / "param.yaml"


class TradingMode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


class FeedKind(StrEnum):
    SIM = "sim"
    KITE = "kite"
    REPLAY = "replay"


class SettingsError(Exception):
    """A setting from the environment is invalid; the message names it."""


class Settings(BaseSettings):
    """Everything an operator sets through environment variables."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    secret_key: str = Field(default="", repr=False)
    instance_path: Path = DEFAULT_INSTANCE_PATH
    database_url: str = ""
    market_database_url: str = ""
    trading_mode: TradingMode = TradingMode.PAPER
    feed: FeedKind = FeedKind.SIM
    params_path: Path = DEFAULT_PARAMS_PATH
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Set to 1 behind nginx so client addresses and https come from X-Forwarded-*.
    trust_proxy: bool = False
    sim_ticks_per_second: float = Field(default=20.0, gt=0, le=100_000)
    sim_seed: int | None = None
    # How often the browser gets a coalesced price update, per second.
    price_push_hz: float = Field(default=4.0, gt=0, le=50)
    login_rate_limit: str = "5 per minute"
    # TRADING_MODE=paper: the paper account's cash when it is first opened, in rupees. An
    # existing account (the app DB keeps it across restarts) keeps its own cash.
    paper_starting_cash: float = Field(default=1_000_000.0, gt=0, allow_inf_nan=False)

    # Kite: the Settings page stores the api key and secret, and /kite/login the day's
    # access token, encrypted with the Fernet key (FERNET_KEY, else instance/fernet.key).
    # KITE_API_KEY / KITE_ACCESS_TOKEN are the fallback when nothing is stored.
    # No secret is ever logged or shown.
    fernet_key: str = Field(default="", repr=False)
    kite_api_key: str = ""
    kite_access_token: str = Field(default="", repr=False)
    kite_ws_root: str = ""  # empty: Kite's own; tests point it at tests/kitesim
    kite_rest_root: str = ""
    kite_login_url: str = ""  # empty: Kite's own login page; tests point it at kitesim
    kite_instruments_path: Path | None = None  # Kite's instruments CSV; else fetched from Kite
    # TRADING_MODE=live: how often the order book is read as a fallback for order updates the
    # ticker or a postback lost.
    kite_order_poll_s: float = Field(default=5.0, ge=1, le=3600)

    # FEED=replay: stored candles played along their price path at REPLAY_SPEED x.
    # Reconcile with the broker and start trading as soon as the process starts; when
    # false the engine waits for Start on the dashboard.
    engine_autostart: bool = True
    replay_timeframe: str = "5m"
    replay_from: date | None = None
    replay_to: date | None = None
    replay_speed: float = Field(default=60.0, ge=0)

    @field_validator("instance_path", "params_path", mode="before")
    @classmethod
    def _empty_means_default(cls, value: object, info) -> object:
        # `PARAMS_PATH=` in an env file must mean "the default", not the current folder.
        if value is None or (isinstance(value, str) and not value.strip()):
            return cls.model_fields[info.field_name].default
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.instance_path / 'ladder.db'}"

    @property
    def resolved_market_database_url(self) -> str:
        """PostgreSQL when MARKET_DATABASE_URL is set, else a SQLite file beside the app DB."""
        return self.market_database_url or f"sqlite:///{self.instance_path / 'market.db'}"


def load_settings(**overrides: object) -> Settings:
    """Read the environment; turn pydantic's errors into one readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None


def ensure_secret_key(instance_path: Path) -> str:
    """Return the instance's SECRET_KEY, creating it (mode 0600) on first run."""
    # The folder holds the key and the DB with password hashes: owner only.
    instance_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = secrets.token_hex(32)
    # O_EXCL: two processes starting at once must not each write a different key.
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
