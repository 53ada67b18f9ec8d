"""How KiteBroker sends one request: token gate, circuit breaker, rate limit, bounded retries.

Every request to Kite goes through `KiteCaller.call`, which
1. refuses at once with TokenExpired while the access token is known to be bad,
2. refuses at once with CircuitOpen while the breaker is open,
3. waits for a slot in the shared KiteRateLimits,
4. maps any failure onto base's error family (kite_errors), and
5. retries transient failures (network, 429, 5xx) with exponential backoff, up to
   `max_attempts` sends, only when the caller says the request is safe to repeat.

Status changes (circuit state, token validity, last error) are published on the
bus topic "broker" as a BrokerStatus, once per change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from Webapp.broker.base import (
    BrokerError,
    BrokerStatus,
    CircuitOpen,
    RateLimited,
    TokenExpired,
)
from Webapp.broker.circuit_breaker import CircuitBreaker
from Webapp.broker.kite_errors import is_outage, is_transient, map_error
from Webapp.ratelimit import KiteRateLimits

_log = logging.getLogger(__name__)

TOPIC = "broker"
T = TypeVar("T")


def where(operation: str, subject: str) -> str:
    """ "place_order INFY", or just "orders" when there is no subject."""
    return f"{operation} {subject}".strip()


class RetryPolicy:
    """Bounded exponential backoff: `base_s`, 2×, 4×… capped at `max_s`; 429 waits ≥ 1 s."""

    def __init__(self, max_attempts: int = 3, base_s: float = 0.5, max_s: float = 8.0) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.max_s = max_s

    def delay_s(self, attempt: int, error: BrokerError) -> float:
        """The wait after failed send number `attempt` (1-based)."""
        delay = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return max(delay, 1.0) if isinstance(error, RateLimited) else delay


class KiteCaller:
    """The request path shared by every KiteBroker method (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        limits: KiteRateLimits,
        breaker: CircuitBreaker,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
        secrets: Callable[[], tuple[str, ...]],
        bus: Any = None,
    ) -> None:
        self.name = name
        self.limits = limits
        self.breaker = breaker
        self.retry = retry
        self.sleep = sleep
        self.bus = bus
        self._secrets = secrets
        self._lock = threading.Lock()
        self._token_valid = True
        self._last_error: str | None = None
        self._published: tuple | None = None
        self.detail: Callable[[], dict] = dict
        breaker.on_change = lambda old, new: self.publish_if_changed()

    # --- the gate ---------------------------------------------------------------------------

    def call(
        self,
        operation: str,
        subject: str,
        send: Callable[[], T],
        *,
        kind: str | None = None,
        repeatable: bool,
    ) -> T:
        """`send()` through the gate; raises only BrokerError subclasses."""
        attempts = self.retry.max_attempts if repeatable else 1
        attempt = 0
        while True:
            attempt += 1
            self._check_token(operation, subject)
            try:
                self.breaker.before_call()
            except CircuitOpen as exc:
                raise CircuitOpen(f"{where(operation, subject)}: {exc.message}") from None
            self.limits.acquire(kind)
            try:
                result = send()
            except Exception as exc:
                error = self._failed(exc, operation, subject)
                if attempt < attempts and is_transient(error):
                    delay = self.retry.delay_s(attempt, error)
                    _log.info("%s; retry %d/%d in %.1fs", error.message, attempt, attempts, delay)
                    self.sleep(delay)
                    continue
                raise error from exc
            self._succeeded()
            return result

    def _check_token(self, operation: str, subject: str) -> None:
        if not self._token_valid:
            raise TokenExpired(
                f"{where(operation, subject)}: not sent, trading is paused until a new Kite "
                "login (Kite refused the access token)"
            )

    def _failed(self, exc: BaseException, operation: str, subject: str) -> BrokerError:
        error = map_error(exc, operation, subject, secrets=self._secrets())
        if isinstance(error, TokenExpired):
            self.breaker.record_neutral()
            with self._lock:
                self._token_valid = False
        elif is_outage(error):
            self.breaker.record_failure()
        elif isinstance(error, RateLimited):
            self.breaker.record_neutral()
        else:  # Kite answered (a rejection): it is up
            self.breaker.record_success()
        with self._lock:
            self._last_error = error.message
        _log.warning("%s", error.message)
        self.publish_if_changed()
        return error

    def _succeeded(self) -> None:
        self.breaker.record_success()

    # --- token and status -------------------------------------------------------------------

    @property
    def token_valid(self) -> bool:
        return self._token_valid

    def token_renewed(self) -> None:
        with self._lock:
            self._token_valid = True
            if self._last_error and "access token" in self._last_error:
                self._last_error = None
        self.publish_if_changed()

    def mark_token_missing(self) -> None:
        with self._lock:
            self._token_valid = False
            self._last_error = "no access token: log in to Kite"

    def status(self) -> BrokerStatus:
        circuit = self.breaker.state.value
        with self._lock:
            token_valid, last_error = self._token_valid, self._last_error
        detail = {"consecutive_failures": self.breaker.consecutive_failures, **self.detail()}
        return BrokerStatus(self.name, circuit, token_valid, last_error, detail)

    def publish_if_changed(self) -> None:
        status = self.status()
        key = (status.circuit, status.token_valid, status.last_error)
        with self._lock:
            if key == self._published:
                return
            self._published = key
        if self.bus is not None:
            self.bus.publish(TOPIC, status)
