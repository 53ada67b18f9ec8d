"""Socket.IO: refuses sockets without a session and pushes coalesced prices to the browser."""

from __future__ import annotations

import logging
import threading

from flask_login import current_user
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room

from Webapp.market.ltp_store import Quote
from Webapp.runtime import Runtime
from Webapp.strategy.engine import PRICES_TOPIC
from Webapp.web.appstate import app_state, close_db
from Webapp.web.dashboard import price_row, price_rows
from Webapp.web.extensions import socketio

log = logging.getLogger(__name__)

PRICES_ROOM = "prices"


@socketio.on("connect")
def on_connect(auth=None):
    try:
        if not current_user.is_authenticated:
            raise ConnectionRefusedError("login required")
    finally:
        close_db()
    join_room(PRICES_ROOM)
    emit("prices", price_rows(app_state().runtime))


class PriceBridge:
    """Collects price events from the bus; pushes at most `hz` updates a second.

    The browser gets the latest price of each changed symbol, never every
    tick: a burst of ticks between two pushes costs one message.
    """

    def __init__(self, sio: SocketIO, runtime: Runtime, hz: float) -> None:
        self._sio = sio
        self._refs = runtime.reference_prices
        self._interval = 1.0 / hz
        self._lock = threading.Lock()
        self._pending: dict[str, Quote] = {}
        self._stopped = threading.Event()
        self._unsubscribe = runtime.bus.subscribe(PRICES_TOPIC, self._on_prices)

    def _on_prices(self, _topic: str, changed: dict[str, Quote]) -> None:
        with self._lock:
            self._pending.update(changed)

    def flush(self) -> int:
        """Push what changed since the last flush; returns how many symbols were sent."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            rows = [price_row(q, self._refs.get(s)) for s, q in sorted(pending.items())]
            self._sio.emit("prices", rows, to=PRICES_ROOM)
        return len(pending)

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.flush()
            except Exception:  # a failed push must not end live prices for good
                log.exception("price push failed")

    def start(self) -> None:
        self._sio.start_background_task(self.run)

    def stop(self) -> None:
        self._unsubscribe()
        self._stopped.set()
