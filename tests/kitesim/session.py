"""kitesim's login: one-time request tokens, the checksum exchange, the valid access tokens.

Kite's flow: the login page redirects to the app with a `request_token`; the app
posts it with `checksum = sha256(api_key + request_token + api_secret)` to
`/session/token` and gets the day's `access_token`. A request token works once;
a wrong checksum leaves it unused. Refusals are Kite's 403 TokenException.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tests.kitesim.order_book import KiteError, kite_time

INVALID_TOKEN = "Token is invalid or has expired."
BAD_CREDENTIALS = "Incorrect `api_key` or `access_token`."


def checksum(api_key: str, request_token: str, api_secret: str) -> str:
    return hashlib.sha256((api_key + request_token + api_secret).encode()).hexdigest()


class Sessions:
    """The logins of one Kite app (`api_key`) for one user; thread-safe."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        access_token: str,
        user_id: str,
        now: Callable[[], datetime],
        user_name: str = "Kitesim Trader",
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.access_token = access_token  # the newest; what `KiteRestSim.client()` uses
        self.user_id = user_id
        self.user_name = user_name
        self.now = now
        self._lock = threading.Lock()
        self._valid = {access_token}
        self._request_tokens: set[str] = set()
        self.logins: list[str] = []  # access tokens issued by /session/token, in order

    def issue_request_token(self) -> str:
        """A one-time request token, as Kite's login page hands to the redirect URL."""
        token = secrets.token_hex(16)
        with self._lock:
            self._request_tokens.add(token)
        return token

    def is_valid(self, access_token: str) -> bool:
        with self._lock:
            return access_token in self._valid

    def authorized(self, header: str) -> bool:
        """`Authorization: token api_key:access_token` with a valid token."""
        prefix = f"token {self.api_key}:"
        return header.startswith(prefix) and self.is_valid(header[len(prefix) :])

    def generate(self, api_key: str, request_token: str, given_checksum: str) -> dict[str, Any]:
        """Exchange a request token for a new access token (Kite's session payload)."""
        if api_key != self.api_key:
            raise KiteError("InputException", "Invalid `api_key`.", 400)
        with self._lock:
            if request_token not in self._request_tokens:
                raise KiteError("TokenException", INVALID_TOKEN, 403)
            expected = checksum(api_key, request_token, self.api_secret)
            if not secrets.compare_digest(given_checksum.encode(), expected.encode()):
                raise KiteError("TokenException", "Invalid `checksum`.", 403)
            self._request_tokens.discard(request_token)
            access_token = secrets.token_hex(16)
            self._valid.add(access_token)
            self.access_token = access_token
            self.logins.append(access_token)
        return {
            **self.profile(),
            "api_key": api_key,
            "access_token": access_token,
            "public_token": secrets.token_hex(16),
            "refresh_token": "",
            "enctoken": secrets.token_urlsafe(24),
            "login_time": kite_time(self.now()),
        }

    def invalidate(self, access_token: str) -> None:
        with self._lock:
            self._valid.discard(access_token)

    def expire(self, access_token: str | None = None) -> list[str]:
        """End one session, or all (Kite's daily expiry); returns the tokens it ended."""
        with self._lock:
            ended = [access_token] if access_token else sorted(self._valid)
            self._valid.difference_update(ended)
            return ended

    def renew(self, access_token: str) -> None:
        """Accept `access_token` from now on and make it the current one."""
        with self._lock:
            self._valid.add(access_token)
            self.access_token = access_token

    def profile(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "user_type": "individual",
            "email": f"{self.user_id.lower()}@kitesim.invalid",
            "user_name": self.user_name,
            "user_shortname": self.user_name.split()[0],
            "broker": "ZERODHA",
            "exchanges": ["NSE", "BSE", "NFO", "BFO", "CDS", "MCX"],
            "products": ["CNC", "NRML", "MIS", "BO", "CO"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
            "avatar_url": None,
            "meta": {"demat_consent": "physical"},
        }
