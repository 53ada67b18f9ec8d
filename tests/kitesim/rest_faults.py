"""kitesim's REST fault switches: what the next requests on a route suffer, and Kite's error bodies.

A fault is queued per route key (`order.place`, `gtt.modify`, …; kiteconnect's own
route names are accepted too) and consumed by the next request on that route.
The kinds and what the official client sees:

- `latency` (`seconds`, default 0.5): the normal reply, late.
- `timeout` (`seconds`, default 30; `stop()` cuts it short): the reply is held past
  the client's timeout, which raises requests' ReadTimeout. Nothing is applied
  unless `applied=True`, which applies the operation first, like a request that
  reached the OMS.
- `429`: NetworkException, HTTP 429 "Too many requests".
- `500`: GeneralException, HTTP 500.
- `502`, `503`, `504`: NetworkException with that status.
- `token`: TokenException, HTTP 403, for that request only (the session stays valid).
- `order_exception`: OrderException, HTTP 400 (`status=500` for the other kind),
  nothing placed: Kite's immediate refusal.
- `error`: any `error_type`, `status` and `message`.
- `reject` (`message`): the order is accepted, its order_id returned, and it goes
  REJECTED with `message` as status_message — Kite's RMS rejection.
- `partial` (`filled`): the order fills `filled` at its first chance and rests OPEN
  with the rest until it is modified (or cancelled).
- `lost_reply` (`how`): the operation is applied, then the socket is closed with
  no reply (`how="reset"`: requests' ConnectionError) or answered HTTP 504
  (`how="504"`: NetworkException).

- `failed` (`message`), `gtt.trigger` only: the GTT fires but its order cannot be
  placed (a price outside the circuit band, say). Kite marks the GTT `triggered`
  with `orders[i].result.order_result` `{"status": "failed", "order_id": "",
  "rejection_reason": message}`, and no order exists in the order book.

`reject` and `partial` apply to `order.place` and to `gtt.trigger` (the order a
GTT places when it fires).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

# Route keys, the HTTP routes they stand for, and the names kiteconnect gives them.
ROUTES = {
    "session.token": "POST /session/token",
    "session.invalidate": "DELETE /session/token",
    "login": "GET /connect/login",
    "profile": "GET /user/profile",
    "margins": "GET /user/margins[/{segment}]",
    "orders": "GET /orders",
    "trades": "GET /trades",
    "order.info": "GET /orders/{order_id}",
    "order.trades": "GET /orders/{order_id}/trades",
    "order.place": "POST /orders/{variety}",
    "order.modify": "PUT /orders/{variety}/{order_id}",
    "order.cancel": "DELETE /orders/{variety}/{order_id}",
    "positions": "GET /portfolio/positions",
    "holdings": "GET /portfolio/holdings",
    "quote.ltp": "GET /quote/ltp",
    "gtt": "GET /gtt/triggers",
    "gtt.place": "POST /gtt/triggers",
    "gtt.info": "GET /gtt/triggers/{trigger_id}",
    "gtt.modify": "PUT /gtt/triggers/{trigger_id}",
    "gtt.delete": "DELETE /gtt/triggers/{trigger_id}",
    "instruments": "GET /instruments[/{exchange}]",
    "historical": "GET /instruments/historical/{instrument_token}/{interval}",
    "gtt.trigger": "(no HTTP) the order a firing GTT places",
}
ALIASES = {
    "api.token": "session.token",
    "api.token.invalidate": "session.invalidate",
    "user.profile": "profile",
    "user.margins": "margins",
    "user.margins.segment": "margins",
    "portfolio.positions": "positions",
    "portfolio.holdings": "holdings",
    "market.quote.ltp": "quote.ltp",
    "market.instruments": "instruments",
    "market.instruments.all": "instruments",
    "market.historical": "historical",
}
ERRORS = {  # fault -> (error_type, HTTP status, message)
    "429": ("NetworkException", 429, "Too many requests"),
    "500": ("GeneralException", 500, "Something went wrong. Please try again."),
    "502": ("NetworkException", 502, "Bad gateway: the order management system did not answer."),
    "503": ("NetworkException", 503, "Service unavailable. Please try again."),
    "504": ("NetworkException", 504, "Gateway timed out."),
    "token": ("TokenException", 403, "Incorrect `api_key` or `access_token`."),
    "order_exception": ("OrderException", 400, "Order could not be placed: refused by the OMS."),
}
ORDER_FAULTS = ("reject", "partial")
GTT_FAULTS = (*ORDER_FAULTS, "failed")  # what gtt.trigger takes
FAULTS = ("latency", "timeout", "error", "lost_reply", *ERRORS, *GTT_FAULTS)
DEFAULT_REJECTION = "RMS: order rejected by the risk management system (kitesim fault)."
DEFAULT_GTT_FAILURE = (
    "Your order price is lower than the current lower circuit limit. "
    "Place an order within the daily range."
)


@dataclass(frozen=True)
class Fault:
    """One queued fault; only the fields of its `kind` matter."""

    kind: str
    seconds: float = 30.0  # latency, timeout
    applied: bool = False  # timeout: apply before holding
    error_type: str | None = None  # error (and overrides for the fixed kinds)
    status: int | None = None
    message: str | None = None  # error bodies; reject's status_message; failed's reason
    filled: int = 0  # partial
    how: str = "reset"  # lost_reply: "reset" or "504"

    def error(self) -> tuple[str, int, str]:
        """(error_type, status, message) of a fault that answers with an error."""
        error_type, status, message = ERRORS.get(self.kind, ("GeneralException", 500, "Error."))
        return (
            self.error_type or error_type,
            self.status or status,
            self.message or message,
        )


def canonical_route(route: str) -> str:
    key = ALIASES.get(route, route)
    if key not in ROUTES:
        raise ValueError(f"unknown route {route!r}; one of {sorted(ROUTES)}")
    return key


class FaultBoard:
    """Faults waiting per route, consumed first in, first out; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}

    def add(self, route: str, fault: str, times: int = 1, **kw: object) -> None:
        key = canonical_route(route)
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {sorted(FAULTS)}")
        if fault in ORDER_FAULTS and key not in ("order.place", "gtt.trigger"):
            raise ValueError(f"{fault!r} applies to order.place and gtt.trigger, not {key}")
        if key == "gtt.trigger" and fault not in GTT_FAULTS:
            raise ValueError("gtt.trigger takes only the 'reject', 'partial' and 'failed' faults")
        if fault == "failed" and key != "gtt.trigger":
            raise ValueError(f"'failed' applies to gtt.trigger (a firing GTT), not {key}")
        if fault == "lost_reply" and kw.get("how", "reset") not in ("reset", "504"):
            raise ValueError("lost_reply's `how` is 'reset' or '504'")
        if fault == "latency":
            kw.setdefault("seconds", 0.5)
        entry = Fault(fault, **kw)  # type: ignore[arg-type]
        with self._lock:
            self._queues.setdefault(key, deque()).extend([entry] * times)

    def take(self, route: str) -> Fault | None:
        with self._lock:
            queue = self._queues.get(route)
            return queue.popleft() if queue else None

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()

    def pending(self) -> dict[str, list[str]]:
        """Route -> the kinds still queued, for a test's failure message."""
        with self._lock:
            return {k: [f.kind for f in q] for k, q in self._queues.items() if q}
