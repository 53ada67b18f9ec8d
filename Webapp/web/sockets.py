"""Socket.IO: refuses sockets without a session; pushes coalesced prices and trading changes."""

from __future__ import annotations

import logging
import threading

from flask_login import current_user
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room

from Webapp.execution.engine import PRICES_TOPIC
from Webapp.execution.runtime import Runtime
from Webapp.execution.trading_view import TRADING_TOPIC, TradingView
from Webapp.market.ltp_store import Quote
from Webapp.web.appstate import app_state, close_db
from Webapp.web.dashboard import price_row, price_rows
from Webapp.web.extensions import socketio

log = logging.getLogger(__name__)

PRICES_ROOM = "prices"
TRADING_ROOM = "trading"
TRADING_EVENT = "trading"
# The trading panel is re-fetched on each push; twice a second is live enough for a person.
TRADING_PUSH_HZ = 2.0


@socketio.on("connect")
def on_connect(auth=None):
    try:
        if not current_user.is_authenticated:
            raise ConnectionRefusedError("login required")
    finally:
        close_db()
    join_room(PRICES_ROOM)
    join_room(TRADING_ROOM)
    emit("prices", price_rows(app_state().runtime))


class _PushLoop:
    """A background task that calls `flush()` every `1 / hz` seconds until stopped."""

    name = "push"

    def __init__(self, sio: SocketIO, hz: float) -> None:
        self._sio = sio
        self._interval = 1.0 / hz
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._unsubscribe = lambda: None

    def flush(self) -> object:
        raise NotImplementedError

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.flush()
            except Exception:  # a failed push must not end live updates for good
                log.exception("%s push failed", self.name)

    def start(self) -> None:
        self._sio.start_background_task(self.run)

    def stop(self) -> None:
        self._unsubscribe()
        self._stopped.set()


class PriceBridge(_PushLoop):
    """Collects price events from the bus; pushes at most `hz` updates a second.

    The browser gets the latest price of each changed symbol, never every
    tick: a burst of ticks between two pushes costs one message.
    """

    name = "price"

    def __init__(self, sio: SocketIO, runtime: Runtime, hz: float) -> None:
        super().__init__(sio, hz)
        self._refs = runtime.reference_prices
        self._pending: dict[str, Quote] = {}
        self._unsubscribe = runtime.bus.subscribe(PRICES_TOPIC, self._on_prices)

    def _on_prices(self, _topic: str, changed: dict[str, Quote]) -> None:
        with self._lock:
            self._pending.update(changed)

    def flush(self) -> int:
        """Push what changed since the last flush; returns how many symbols were sent."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            refs = self._refs()  # the previous closes of the engine's session, cached there
            rows = [price_row(q, refs.get(s)) for s, q in sorted(pending.items())]
            self._sio.emit("prices", rows, to=PRICES_ROOM)
        return len(pending)


def trading_summary(view: TradingView) -> dict:
    """The small "trading" event: enough for the page to know it should re-fetch the panel."""
    return {
        "state": view.state.value,
        "entries_paused": view.entries_paused,
        "ladders": len(view.ladders),
        "loss_limit_hit": view.day.loss_limit_hit,
        "updated_at": None if view.updated_at is None else view.updated_at.isoformat(),
    }


class TradingBridge(_PushLoop):
    """Keeps the latest trading view from the bus; tells the browsers at most `hz` times a second.

    The push carries a summary, not the view: the page re-fetches the panel partial, so
    the HTML is rendered in one place (Webapp.web.trading). Several views published
    between two pushes cost one message.
    """

    name = "trading"

    def __init__(self, sio: SocketIO, runtime: Runtime, hz: float = TRADING_PUSH_HZ) -> None:
        super().__init__(sio, hz)
        self._latest: TradingView | None = None
        self._changed = False
        self._unsubscribe = runtime.bus.subscribe(TRADING_TOPIC, self._on_view)

    def _on_view(self, _topic: str, view: TradingView) -> None:
        with self._lock:
            self._latest, self._changed = view, True

    @property
    def latest(self) -> TradingView | None:
        return self._latest

    def flush(self) -> bool:
        """Push one summary if a view arrived since the last flush; True when it pushed."""
        with self._lock:
            view, changed, self._changed = self._latest, self._changed, False
        if not changed or view is None:
            return False
        self._sio.emit(TRADING_EVENT, trading_summary(view), to=TRADING_ROOM)
        return True
