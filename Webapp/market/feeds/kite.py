"""Live prices from Zerodha's ticker: KiteTicker connections, sharded within Kite's limits."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from Webapp.event_bus import EventBus
from Webapp.market.feeds.base import Feed, FeedState, FeedStatus
from Webapp.market.feeds.kite_shards import (
    KITE_MAX_CONNECTIONS,
    KITE_MAX_PER_CONNECTION,
    MODES,
    Backoff,
    KiteShard,
    ShardEvent,
    ShardState,
    call_in_reactor,
    ensure_reactor_running,
    in_reactor_thread,
    plan_shards,
)
from Webapp.market.feeds.kite_tls import TrustRoot
from Webapp.market.ltp_store import LTPStore

_log = logging.getLogger(__name__)

TOPIC = "feed"
TOKEN_EXPIRED = "access token expired: log in to Kite again"  # noqa: S105 (a message)
NO_TOKEN = "no access token: log in to Kite"  # noqa: S105 (a message)
_STOP = object()
# Exchange times before this are the packet's "not set" zero, not a real time.
_EPOCH_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)


class KiteFeed(Feed):
    """Ticks from Kite's websocket for a fixed set of instruments, written into an LTPStore.

    Up to `max_per_connection` instruments ride one KiteTicker connection, over
    at most `max_connections` (Kite allows 3 x 3,000). Connections run on the
    process's single Twisted reactor thread; their callbacks only map tokens to
    symbols, write the store and return. A "kite-feed" supervisor thread does
    everything slow: reading a new access token after a 403, publishing state
    and ticks/s to the bus (topic "feed"), cutting connections that went silent.

    Liveness counts every message, heartbeats included: a quiet market is not a
    stale feed, a silent socket is. `access_token` is a provider, called at start
    and again whenever Kite refuses the token, so the daily token is picked up
    without a restart.
    """

    name = "kite"

    def __init__(
        self,
        *,
        store: LTPStore,
        bus: EventBus | None,
        api_key: str,
        access_token: Callable[[], str],
        instruments: Mapping[int, str],
        mode: str = "quote",
        stale_after_s: float = 10.0,
        root: str | None = None,
        max_per_connection: int = KITE_MAX_PER_CONNECTION,
        max_connections: int = KITE_MAX_CONNECTIONS,
        reconnect_initial_delay_s: float = 1.0,
        reconnect_max_delay_s: float = 60.0,
        reconnect_max_tries: int = 300,
        connect_timeout_s: float = 30.0,
        token_retry_s: float = 60.0,
        silent_reconnect_s: float | None = 30.0,
        publish_every_s: float = 1.0,
        on_order_update: Callable[[dict[str, Any]], None] | None = None,
        tls_trust_root: TrustRoot | None = None,
    ) -> None:
        super().__init__(stale_after_s=stale_after_s)
        if not api_key:
            raise ValueError("api_key is empty: set the Kite API key in the settings")
        if not callable(access_token):
            raise TypeError("access_token must be a function returning the current token")
        _check_mode(mode)
        if root is not None and not root.startswith(("ws://", "wss://")):
            raise ValueError(f"root must be a ws:// or wss:// URL, got {root!r}")
        for what, value in (
            ("reconnect_initial_delay_s", reconnect_initial_delay_s),
            ("reconnect_max_delay_s", reconnect_max_delay_s),
            ("connect_timeout_s", connect_timeout_s),
            ("token_retry_s", token_retry_s),
            ("publish_every_s", publish_every_s),
            ("silent_reconnect_s", silent_reconnect_s or 1.0),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{what} must be positive and finite, got {value!r}")
        if reconnect_max_tries < 1:
            raise ValueError(f"reconnect_max_tries must be at least 1, got {reconnect_max_tries}")
        symbols = {int(token): symbol for token, symbol in instruments.items()}
        if len(set(symbols.values())) != len(symbols):
            raise ValueError("instruments maps two tokens to one symbol; prices would interleave")
        self._plan = plan_shards(list(symbols), max_per_connection, max_connections)

        self.store = store
        self.bus = bus
        self.api_key = api_key
        self.root = root
        self.mode = mode
        self.token_retry_s = token_retry_s
        self.silent_reconnect_s = silent_reconnect_s
        self.publish_every_s = publish_every_s
        self._access_token = access_token
        self._symbols = symbols
        self._on_order_update = on_order_update
        self._tls_trust_root = tls_trust_root  # None: the platform's trust store
        self._backoff = Backoff(
            reconnect_initial_delay_s, reconnect_max_delay_s, reconnect_max_tries, connect_timeout_s
        )
        self._shards: tuple[KiteShard, ...] = ()  # replaced whole (copy-on-write)
        self._shards_lock = threading.Lock()
        self._stopping = True
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._token = ""
        self._rejected_tokens: set[str] = set()
        self._next_token_check: float | None = None
        self.last_kite_error = ""
        self.ticks_per_s = 0.0  # over the last publish_every_s

    @property
    def instrument_count(self) -> int:
        return len(self._symbols)

    @property
    def connection_plan(self) -> list[list[int]]:
        """The instrument tokens of each connection."""
        return [list(tokens) for tokens in self._plan]

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect every shard in the background; RuntimeError if already running."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.name} feed is still running (or still stopping)")
        ensure_reactor_running()
        self._events = queue.SimpleQueue()
        self._rejected_tokens.clear()
        self._next_token_check = None
        self._stopping = False
        self._mark_starting()
        self._thread = threading.Thread(target=self._supervise, name="kite-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (close() + stop_retry(), never ticker.stop()) and join."""
        deadline = time.monotonic() + timeout
        with self._shards_lock:
            self._stopping = True
            shards, self._shards = self._shards, ()
        self._events.put(_STOP)
        for shard in shards:
            call_in_reactor(shard.close)
        thread = self._thread
        if not in_reactor_thread():  # from a store subscriber: cannot wait on ourselves
            for shard in shards:
                if not shard.closed.wait(max(0.0, deadline - time.monotonic())):
                    _log.warning("%s did not close in time; cutting it", shard.label)
                    call_in_reactor(shard.abort)
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        if thread is not None and not thread.is_alive():
            self._thread = None  # else start() refuses until the supervisor has exited
        self._mark_stopped()
        self._publish(self.status(), ticks_per_s=0.0)

    def set_mode(self, mode: str) -> None:
        """Switch every instrument to `mode` (ltp, quote or full), now and after reconnects."""
        _check_mode(mode)
        self.mode = mode
        for shard in self._shards:
            call_in_reactor(shard.apply_mode, mode)

    # --- status ------------------------------------------------------------------------

    def status(self, now: datetime | None = None) -> FeedStatus:
        """As Feed.status, but STALE means no message (heartbeats count) on some connection."""
        with self._state_lock:
            state, detail, running_since = self._state, self._detail, self._running_since
        shards = self._shards
        if state in (FeedState.RUNNING, FeedState.STARTING) and shards:
            if now is None:
                now = datetime.now(UTC)
            detail = ""
            for shard in shards:
                if shard.state is not ShardState.OPEN:
                    attempt = f", attempt {shard.attempts}" if shard.attempts else ""
                    detail = f"{shard.label} {shard.state.value}{attempt}"
                    break
            if state is FeedState.RUNNING:
                quiet = max(shards, key=lambda s: _quiet_s(now, s.last_seen_at or running_since))
                quiet_s = _quiet_s(now, quiet.last_seen_at or running_since)
                if quiet_s > self.stale_after_s:
                    state = FeedState.STALE
                    detail = f"no data for {quiet_s:.1f}s on {quiet.label}" + (
                        f" ({detail})" if detail else ""
                    )
        return FeedStatus(self.name, state, self._ticks_total, self._last_tick_at, detail)

    # --- reactor thread: ticks ---------------------------------------------------------------

    def _handle_ticks(self, ticks: list[dict[str, Any]], received_at: datetime) -> None:
        """Map each tick to its symbol and write it to the store; nothing else, no logging."""
        symbols, update = self._symbols, self.store.update
        for tick in ticks:
            symbol = symbols.get(tick["instrument_token"])
            ltp = tick["last_price"]
            if symbol is None or not ltp > 0:  # unknown token, or no trade yet
                continue
            stamp = tick.get("exchange_timestamp")
            if stamp is not None:
                # kiteconnect builds it with datetime.fromtimestamp(): naive local time.
                stamp = stamp.astimezone(UTC)
                if stamp < _EPOCH_FLOOR:
                    stamp = None
            try:
                update(symbol, ltp, tick.get("volume_traded", 0), stamp, received_at)
            except ValueError:  # a non-finite price; the store refuses it
                continue
            self._record_tick(received_at)

    # --- supervisor thread ------------------------------------------------------------------

    def _supervise(self) -> None:
        try:
            self._refresh_token()
            self._watch()
        except Exception as exc:
            _log.exception("%s feed supervisor failed", self.name)
            self._mark_error(f"supervisor failed: {type(exc).__name__}: {exc}")
            self._publish(self.status(), ticks_per_s=0.0)

    def _watch(self) -> None:
        interval = min(0.5, self.stale_after_s / 4)
        published: tuple[Any, ...] = ()
        rate_at, rate_ticks = time.monotonic(), self._ticks_total
        while True:
            try:
                event = self._events.get(timeout=interval)
            except queue.Empty:
                event = None
            if event is _STOP:
                return
            if event is not None:
                self._handle_event(event)
            now = time.monotonic()
            if self._next_token_check is not None and now >= self._next_token_check:
                self._refresh_token()
            self._cut_silent_connections()
            due = now - rate_at >= self.publish_every_s
            if due:
                ticks = self._ticks_total
                self.ticks_per_s = (ticks - rate_ticks) / (now - rate_at)
                rate_at, rate_ticks = now, ticks
            status, shards = self.status(), self._shards
            key = (status.state, sum(s.state is ShardState.OPEN for s in shards), len(shards))
            if due or key != published:
                self._publish(status, ticks_per_s=self.ticks_per_s)
                published = key

    def _handle_event(self, event: ShardEvent) -> None:
        shard, kind = event.shard, event.kind
        if shard not in self._shards:
            return  # from a connection already replaced or closed
        if kind == "open":
            _log.info(
                "%s feed: %s open (%d instruments)", self.name, shard.label, len(shard.tokens)
            )
            self._maybe_running()
        elif kind == "lost":
            _log.warning(
                "%s feed: %s lost (%s); reconnecting", self.name, shard.label, event.detail
            )
        elif kind == "auth_failed":
            _log.warning("%s feed: Kite refused the access token on %s", self.name, shard.label)
            self._rejected_tokens.add(event.detail)
            if self._token in self._rejected_tokens:
                self._refresh_token()
            else:  # another connection already fetched a newer token
                self._replace(shard)
        elif kind == "gave_up":
            _log.error("%s feed: %s gave up reconnecting; starting afresh", self.name, shard.label)
            self._replace(shard)
        elif kind == "failed":
            self._mark_error(f"{shard.label} cannot connect: {event.detail}")
        elif kind == "kite_error":
            self.last_kite_error = event.detail
            _log.warning("%s feed: Kite error on %s: %s", self.name, shard.label, event.detail)
        elif kind == "order_update" and self._on_order_update is not None:
            try:
                self._on_order_update(event.detail)
            except Exception:
                _log.exception("%s feed: order update handler failed", self.name)

    def _refresh_token(self) -> None:
        """Read the provider; open (or reopen refused) connections if it gives a usable token."""
        try:
            token = self._access_token() or ""
        except Exception as exc:
            _log.exception("%s feed: reading the access token failed", self.name)
            token, problem = "", f"reading the access token failed: {type(exc).__name__}: {exc}"
        else:
            problem = TOKEN_EXPIRED if token in self._rejected_tokens else NO_TOKEN
        if self._stopping:
            return
        if not token or token in self._rejected_tokens:
            self._mark_error(problem)
            self._next_token_check = time.monotonic() + self.token_retry_s
            return
        self._next_token_check = None
        self._token = token
        if not self._shards:
            self._open_all()
        else:
            for shard in self._shards:
                if shard.state is ShardState.AUTH_FAILED or shard.access_token != token:
                    self._replace(shard)
        self._mark_starting()
        self._maybe_running()

    def _maybe_running(self) -> None:
        if (
            self._next_token_check is None
            and all(s.opened_ever for s in self._shards)
            and self.status().state is FeedState.STARTING
        ):
            self._mark_running()

    def _new_shard(self, number: int, tokens: list[int]) -> KiteShard:
        return KiteShard(
            number=number,
            of=len(self._plan),
            tokens=tokens,
            api_key=self.api_key,
            access_token=self._token,
            root=self.root,
            mode=self.mode,
            backoff=self._backoff,
            on_ticks=self._handle_ticks,
            post=self._events.put,
            tls_trust_root=self._tls_trust_root,
        )

    def _open_all(self) -> None:
        shards = tuple(self._new_shard(n, tokens) for n, tokens in enumerate(self._plan, 1))
        with self._shards_lock:
            if self._stopping:
                return
            self._shards = shards
        for shard in shards:
            call_in_reactor(shard.open)

    def _replace(self, old: KiteShard) -> None:
        new = self._new_shard(old.number, old.tokens)
        with self._shards_lock:
            if self._stopping or old not in self._shards:
                return
            self._shards = tuple(new if s is old else s for s in self._shards)
        call_in_reactor(old.close)
        call_in_reactor(new.open)

    def _cut_silent_connections(self) -> None:
        if not self.silent_reconnect_s:
            return
        now = datetime.now(UTC)
        for shard in self._shards:
            seen = shard.last_seen_at
            if (
                shard.state is ShardState.OPEN
                and _quiet_s(now, seen) > self.silent_reconnect_s
                and shard.cut_for_silence_since != seen  # one cut per silence
            ):
                _log.warning("%s feed: %s silent; reconnecting", self.name, shard.label)
                shard.cut_for_silence_since = seen
                call_in_reactor(shard.drop)

    def _publish(self, status: FeedStatus, *, ticks_per_s: float) -> None:
        if self.bus is None:
            return
        shards = self._shards
        self.bus.publish(
            TOPIC,
            {
                "name": status.name,
                "state": status.state.value,
                "detail": status.detail,
                "ticks_per_s": round(ticks_per_s, 1),
                "connections_open": sum(s.state is ShardState.OPEN for s in shards),
                "connections": len(shards),
            },
        )


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")


def _quiet_s(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else (now - since).total_seconds()
