"""Map kiteconnect's exceptions and the raw `requests` errors it lets through onto base's family.

The official client raises one class per Kite `error_type` (carrying the HTTP
status in `.code`) and re-raises whatever `requests` raised. Every one of them
lands here in exactly one `BrokerError` subclass, so the engine decides on types:

| raised                                     | becomes                                   |
|--------------------------------------------|-------------------------------------------|
| TokenException                             | TokenExpired (trading pauses)             |
| InputException                             | InputRejected                             |
| OrderException                             | OrderRejected                             |
| NetworkException, HTTP 429                 | RateLimited                               |
| NetworkException, other                    | NetworkUnavailable(maybe_applied=True)    |
| DataException (Kite's OMS answered badly)  | NetworkUnavailable(maybe_applied=True)    |
| GeneralException, PermissionException      | BrokerError (code = HTTP status)          |
| requests ConnectTimeout, refused, DNS, TLS | NetworkUnavailable(maybe_applied=False)   |
| requests ReadTimeout, reset, chunked, other| NetworkUnavailable(maybe_applied=True)    |

"maybe_applied" is about whether the request can have reached Kite: a connection
that never opened cannot have placed an order; a timeout or a reset after the
request was sent may have.
"""

from __future__ import annotations

from collections.abc import Iterable

import requests
from kiteconnect import exceptions as kex
from urllib3 import exceptions as u3

from Webapp.broker.base import (
    BrokerError,
    CircuitOpen,
    InputRejected,
    NetworkUnavailable,
    OrderRejected,
    RateLimited,
    TokenExpired,
)

_REDACTED = "***"


def map_error(
    exc: BaseException, operation: str, subject: str = "", *, secrets: Iterable[str] = ()
) -> BrokerError:
    """`exc` as a BrokerError whose message names `operation` and `subject`, never a secret."""
    if isinstance(exc, BrokerError):
        return exc
    where = f"{operation} {subject}".strip()
    detail = _redact(_detail(exc), secrets)
    code = getattr(exc, "code", None) if isinstance(exc, kex.KiteException) else None
    message = f"{where}: {detail}"
    if isinstance(exc, kex.TokenException):
        return TokenExpired(
            f"{where}: Kite refused the access token ({detail}); log in to Kite again", code=code
        )
    if isinstance(exc, kex.InputException):
        return InputRejected(message, code=code)
    if isinstance(exc, kex.OrderException):
        return OrderRejected(message, code=code)
    if isinstance(exc, kex.NetworkException):
        if code == 429:
            return RateLimited(f"{where}: Kite says too many requests ({detail})", code=code)
        return NetworkUnavailable(message, code=code, maybe_applied=True)
    if isinstance(exc, kex.DataException):
        return NetworkUnavailable(message, code=code, maybe_applied=True)
    if isinstance(exc, kex.KiteException):  # General, Permission, and any future class
        if code == 429:
            return RateLimited(f"{where}: Kite says too many requests ({detail})", code=code)
        return BrokerError(message, code=code)
    if isinstance(exc, requests.RequestException):
        return NetworkUnavailable(
            f"{where}: Kite unreachable ({detail})", maybe_applied=not _never_sent(exc)
        )
    return BrokerError(f"{where}: unexpected {detail}")


def is_transient(error: BrokerError) -> bool:
    """Worth another try for a read, modify or delete: network, 429, or a 5xx answer."""
    if isinstance(error, NetworkUnavailable | RateLimited):
        return True
    if isinstance(error, InputRejected | OrderRejected | TokenExpired | CircuitOpen):
        return False
    return error.code is not None and error.code >= 500


def is_outage(error: BrokerError) -> bool:
    """A sign that Kite (or the way to it) is down: counts toward opening the circuit.

    429 is not: it means we were too fast, and the limiter and backoff handle it.
    """
    if isinstance(error, NetworkUnavailable):
        return True
    if isinstance(error, InputRejected | OrderRejected | TokenExpired | RateLimited | CircuitOpen):
        return False
    return error.code is not None and error.code >= 500


def maybe_applied(error: BrokerError) -> bool:
    """Could the failed request have changed something at Kite? (placement must look first)"""
    if isinstance(error, NetworkUnavailable):
        return error.maybe_applied
    if isinstance(error, InputRejected | OrderRejected | TokenExpired | RateLimited | CircuitOpen):
        return False
    return error.code is None or error.code >= 500


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have left this machine (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, u3.MaxRetryError):
            reason = reason.reason
        # NewConnectionError covers refused and DNS failures (NameResolutionError).
        return isinstance(reason, u3.NewConnectionError | u3.ConnectTimeoutError)
    return False


def _detail(exc: BaseException) -> str:
    code = getattr(exc, "code", None) if isinstance(exc, kex.KiteException) else None
    text = str(exc) or "no detail"
    return f"{type(exc).__name__}: {text}" + (f" (HTTP {code})" if code else "")


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    return text
