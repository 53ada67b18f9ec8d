"""kitesim's order updates: each order change as Kite pushes it, on the ticker and by postback.

The exchange reports a change under its lock; this queues it and a thread of its
own sends it, so a slow postback receiver never holds up a price, and updates go
out in the order they happened. The ticker gets `{"type": "order", "data": ...}`
for every change with the order book's status; the postback URL gets Kite's final
statuses and `UPDATE` (a partial fill or a modification) as JSON, signed with
`checksum = sha256(order_id + order_timestamp + api_secret)`. Kite sends its
postbacks over the websocket too, so an `UPDATE` also reaches the ticker, just
before the order book's status of the same change.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from typing import Any

import requests

from tests.kitesim.ticker import TickerSim

_log = logging.getLogger(__name__)

UPDATE = "UPDATE"  # Kite's status for a modification or a partial fill of an open order


class OrderUpdates:
    """The exchange's `on_order_update` hook, and the record of what was pushed."""

    def __init__(
        self,
        *,
        user_id: str,
        api_secret: str,
        ticker: TickerSim | None = None,
        postback_url: str | None = None,
    ) -> None:
        self.user_id = user_id
        self.api_secret = api_secret
        self.ticker = ticker
        self.postback_url = postback_url
        self._lock = threading.Lock()
        self._sent: list[dict[str, Any]] = []
        self._postbacks: list[tuple[dict[str, Any], int | None]] = []
        self._queue: queue.Queue[tuple[dict[str, Any], str | None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def __call__(self, order: dict[str, Any], postback_status: str | None) -> None:
        update = {
            **order,
            "user_id": self.user_id,
            "unfilled_quantity": order["pending_quantity"],
            "app_id": 1,
            "checksum": "",
        }
        # (ticker message, postback status): an UPDATE goes out as a message of its own.
        items = [(update, postback_status)]
        if postback_status == UPDATE:
            items = [({**update, "status": UPDATE}, UPDATE), (update, None)]
        with self._lock:
            self._sent.extend(message for message, _ in items)
        for item in items:
            self._queue.put(item)

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Every update, in order (queued for the ticker whether or not one is attached)."""
        with self._lock:
            return list(self._sent)

    @property
    def postbacks(self) -> list[tuple[dict[str, Any], int | None]]:
        """(payload, HTTP status or None if unreachable) per postback sent."""
        with self._lock:
            return list(self._postbacks)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kitesim-updates", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            update, postback_status = item
            if self.ticker is not None:
                self.ticker.send_order_update(update)
            if self.postback_url and postback_status is not None:
                self._post_back({**update, "status": postback_status})

    def _post_back(self, update: dict[str, Any]) -> None:
        signed = update["order_id"] + (update["order_timestamp"] or "") + self.api_secret
        payload = {**update, "checksum": hashlib.sha256(signed.encode()).hexdigest()}
        try:
            status = requests.post(self.postback_url, json=payload, timeout=5).status_code
        except requests.RequestException as exc:
            _log.info("kitesim: postback to %s failed: %s", self.postback_url, exc)
            status = None
        with self._lock:
            self._postbacks.append((payload, status))
