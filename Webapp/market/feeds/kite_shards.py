"""KiteFeed's plumbing: the one Twisted reactor per process, one KiteTicker per shard."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import connectWS
from kiteconnect import KiteTicker
from kiteconnect.ticker import KiteTickerClientProtocol
from twisted.internet import reactor
from twisted.python import threadable

from Webapp.market.feeds.kite_tls import (
    TrustRoot,
    VerifyingTLS,
    certificate_failure,
    load_trust_root,
)

if TYPE_CHECKING:
    pass

_log = logging.getLogger(__name__)

# Kite's limits per API key.
KITE_MAX_PER_CONNECTION = 3000
KITE_MAX_CONNECTIONS = 3

MODES = (KiteTicker.MODE_LTP, KiteTicker.MODE_QUOTE, KiteTicker.MODE_FULL)

# autobahn reports a refused handshake as "... upgrade failed (403 - Forbidden)".
_HANDSHAKE_STATUS = re.compile(r"upgrade failed \((\d{3})")
_AUTH_STATUSES = frozenset({401, 403})

_reactor_lock = threading.Lock()


def ensure_reactor_running(timeout: float = 10.0) -> None:
    """Start Twisted's reactor in a daemon thread unless it already runs; it is never stopped.

    A Twisted reactor cannot run twice in one process, so every KiteTicker of the
    process shares this one. KiteTicker.connect(threaded=True) would start it
    too, but only when called from a thread that sees it stopped; starting it
    here, once, under a lock, and then calling connect() on the reactor thread
    means no feed ever races another to start it.
    """
    with _reactor_lock:
        if reactor.running:
            return
        if getattr(reactor, "_startedBefore", False):
            raise RuntimeError(
                "the Twisted reactor was stopped (was KiteTicker.stop() called?) and cannot "
                "restart in this process: restart the server"
            )
        started = threading.Event()
        reactor.callWhenRunning(started.set)
        threading.Thread(
            target=reactor.run,
            kwargs={"installSignalHandlers": False},  # signals belong to the main thread
            name="twisted-reactor",
            daemon=True,
        ).start()
        if not started.wait(timeout):
            raise RuntimeError(f"the Twisted reactor did not start within {timeout:.0f}s")


def in_reactor_thread() -> bool:
    return threadable.isInIOThread()


def call_in_reactor(function: Callable[..., Any], *args: Any) -> None:
    """Run `function(*args)` on the reactor thread; Twisted and KiteTicker are not thread-safe."""
    reactor.callFromThread(function, *args)


def plan_shards(
    tokens: Sequence[int], max_per_connection: int, max_connections: int
) -> list[list[int]]:
    """Split `tokens` over as few connections as the limits allow, in near-equal parts."""
    if not 1 <= max_per_connection <= KITE_MAX_PER_CONNECTION:
        raise ValueError(
            f"max_per_connection must be 1..{KITE_MAX_PER_CONNECTION}, got {max_per_connection!r}"
        )
    if not 1 <= max_connections <= KITE_MAX_CONNECTIONS:
        raise ValueError(
            f"max_connections must be 1..{KITE_MAX_CONNECTIONS}, got {max_connections!r}"
        )
    if not tokens:
        raise ValueError("no instruments to subscribe: the Kite feed needs at least one")
    count = math.ceil(len(tokens) / max_per_connection)
    if count > max_connections:
        raise ValueError(
            f"{len(tokens):,} instruments need {count} connections of {max_per_connection:,}, "
            f"but at most {max_connections} are allowed (Kite's limit is "
            f"{KITE_MAX_CONNECTIONS} x {KITE_MAX_PER_CONNECTION:,} = "
            f"{KITE_MAX_CONNECTIONS * KITE_MAX_PER_CONNECTION:,} per API key)"
        )
    size, extra = divmod(len(tokens), count)
    shards, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        shards.append(list(tokens[start:end]))
        start = end
    return shards


class _ClientProtocol(KiteTickerClientProtocol):
    """Keeps why the connection was lost: autobahn's on_close reason omits a host-name mismatch."""

    def connectionLost(self, reason: Any) -> None:
        self.factory.lost_reason = reason.value
        super().connectionLost(reason)


class GuardedKiteTicker(KiteTicker):
    """KiteTicker that verifies the server's certificate and survives malformed frames.

    The stock parser raises struct.error on a truncated frame; the exception
    escapes into Twisted, which then drops the connection, costing every
    instrument on it a reconnect. Here the frame is counted and skipped.
    """

    malformed_frames = 0

    def __init__(self, *args: Any, tls_trust_root: TrustRoot | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tls_trust_root = tls_trust_root

    def connect(
        self,
        threaded: bool = False,
        disable_ssl_verification: bool = False,
        proxy: Mapping[str, Any] | None = None,
    ) -> None:
        """Dial the ticker on the running reactor, verifying a wss:// server's certificate.

        Why this override: kiteconnect's connect() dials wss:// with Twisted's
        ClientContextFactory, which checks neither the certificate chain nor the
        host name, so anyone on the network path could pose as Kite and feed the
        engine false prices. This is the same dial (headers, user agent, proxy,
        timeout) with optionsForClientTLS: the platform's trust store (or
        tls_trust_root) and a host-name check (VerifyingTLS: Twisted's own
        fails open). Reconnects reuse it: ReconnectingClientFactory.retry()
        calls connector.connect() on the same connector, whose TLS factory holds
        this one connection creator. It never starts the reactor
        (ensure_reactor_running does, once), so `threaded` is ignored, and it
        does not turn on Twisted's debug logging.
        """
        if disable_ssl_verification:
            raise ValueError("refusing to connect to the Kite ticker without verifying TLS")
        self._create_connection(
            self.socket_url,
            useragent=self._user_agent(),
            proxy=proxy,
            headers={"X-Kite-Version": "3"},
        )
        self.factory.protocol = _ClientProtocol
        self.factory.lost_reason = None
        creator = None
        if self.factory.isSecure:
            creator = VerifyingTLS(self.factory.host, load_trust_root(self.tls_trust_root))
        connectWS(self.factory, contextFactory=creator, timeout=self.connect_timeout)

    def _parse_binary(self, bin: bytes) -> list[dict[str, Any]]:
        try:
            return super()._parse_binary(bin)
        except Exception:
            self.malformed_frames += 1
            if self.malformed_frames == 1 or self.malformed_frames % 1000 == 0:
                _log.warning("dropped malformed ticker frame #%d", self.malformed_frames)
            return []


class ShardState(StrEnum):
    CONNECTING = "connecting"  # first connection attempt not yet open
    OPEN = "open"
    RECONNECTING = "reconnecting"  # lost; KiteTicker's backoff is retrying
    AUTH_FAILED = "auth_failed"  # handshake refused (403): retrying stopped until a new token
    # The server's TLS certificate was refused (untrusted, or for another host):
    # possibly an impostor. Retrying with the same verification until one opens.
    CERTIFICATE_REJECTED = "certificate_rejected"
    GAVE_UP = "gave_up"  # KiteTicker exhausted its retries
    CLOSED = "closed"  # closed on request


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: the first retry waits about initial_s, then grows by e up to max_s."""

    initial_s: float = 1.0
    max_s: float = 60.0
    max_tries: int = 300
    connect_timeout_s: float = 30.0


@dataclass(frozen=True)
class ShardEvent:
    """What a shard tells its feed's supervisor thread; posted from the reactor thread."""

    kind: str  # open lost reconnecting auth_failed gave_up failed kite_error order_update
    shard: KiteShard
    detail: Any = None


TickSink = Callable[[list[dict[str, Any]], datetime], None]


class KiteShard:
    """One KiteTicker connection carrying a slice of the feed's instruments.

    Methods other than the constructor run on the reactor thread (through
    `call_in_reactor`); other threads only read the plain attributes. Callbacks
    do their bookkeeping and post a ShardEvent; ticks go straight to `on_ticks`.
    """

    def __init__(
        self,
        *,
        number: int,
        of: int,
        tokens: Sequence[int],
        api_key: str,
        access_token: str,
        root: str | None,
        mode: str,
        backoff: Backoff,
        on_ticks: TickSink,
        post: Callable[[ShardEvent], None],
        tls_trust_root: TrustRoot | None = None,
    ) -> None:
        self.number, self.of = number, of
        self.tokens = list(tokens)
        self.access_token = access_token
        self.mode = mode
        self.state = ShardState.CONNECTING
        self.opened_ever = False
        self.attempts = 0
        self.last_seen_at: datetime | None = None  # last message of any kind, or the open
        self.cut_for_silence_since: datetime | None = None  # the feed's thread only
        self.closed = threading.Event()
        self._closing = False
        self._backoff = backoff
        self._on_ticks = on_ticks
        self._post = post
        self.ticker = GuardedKiteTicker(
            api_key,
            access_token,
            root=root,
            reconnect_max_tries=min(backoff.max_tries, 300),
            connect_timeout=backoff.connect_timeout_s,
            tls_trust_root=tls_trust_root,
        )
        ticker = self.ticker
        ticker.on_message = self._handle_message
        ticker.on_ticks = self._handle_ticks
        ticker.on_open = self._handle_open
        ticker.on_close = self._handle_close
        ticker.on_error = self._handle_error
        ticker.on_reconnect = self._handle_reconnect
        ticker.on_noreconnect = self._handle_noreconnect
        ticker.on_order_update = self._handle_order_update

    @property
    def label(self) -> str:
        return f"connection {self.number} of {self.of}"

    # --- commands (reactor thread) ---------------------------------------------------

    def open(self) -> None:
        if self._closing:
            return
        try:
            self.ticker.connect(threaded=True)  # the reactor runs already: this only dials
        except Exception as exc:
            self.state = ShardState.GAVE_UP
            self._post(ShardEvent("failed", self, f"{type(exc).__name__}: {exc}"))
            return
        factory = self.ticker.factory
        # KiteTicker insists on max delay >= 5s; tests want much less, and the
        # first delay (Twisted's 1s default) is set only through the factory.
        factory.initialDelay = factory.delay = self._backoff.initial_s
        factory.maxDelay = max(self._backoff.max_s, self._backoff.initial_s)
        factory.maxRetries = self._backoff.max_tries

    def close(self) -> None:
        """Close for good: no retry, a clean websocket close if open. Never ticker.stop()."""
        self._closing = True
        was_open = self.state is ShardState.OPEN
        self.state = ShardState.CLOSED
        if getattr(self.ticker, "factory", None) is not None:  # None until connect() ran
            self.ticker.close()  # stop_retry() + a close frame when connected
        if not was_open:
            self.closed.set()

    def abort(self) -> None:
        """Cut the TCP connection at once (after a close that did not finish in time)."""
        ws = self.ticker.ws
        if ws is not None:
            ws.dropConnection(abort=True)
        self.closed.set()

    def drop(self) -> None:
        """Cut a silent connection so KiteTicker's backoff reconnects it."""
        ws = self.ticker.ws
        if self.state is ShardState.OPEN and ws is not None:
            ws.dropConnection(abort=True)

    def apply_mode(self, mode: str) -> None:
        self.mode = mode
        if self.ticker.is_connected():
            self._sync_subscription()

    # --- KiteTicker callbacks (reactor thread) ----------------------------------------------

    def _handle_message(self, ticker: KiteTicker, payload: bytes, is_binary: bool) -> None:
        # Every message, heartbeats included, proves the connection alive.
        self.last_seen_at = datetime.now(UTC)

    def _handle_ticks(self, ticker: KiteTicker, ticks: list[dict[str, Any]]) -> None:
        if self._closing:
            return
        # on_message ran just before for the same payload and stamped its arrival.
        self._on_ticks(ticks, self.last_seen_at or datetime.now(UTC))

    def _handle_open(self, ticker: KiteTicker) -> None:
        if self._closing:
            ticker.close()
            return
        self.state = ShardState.OPEN
        self.opened_ever = True
        self.attempts = 0
        self.last_seen_at = datetime.now(UTC)
        try:
            self._sync_subscription()
        except Exception:
            # KiteTicker closed the socket already; on_close follows and reconnects.
            _log.exception("%s: subscribing failed", self.label)
            return
        self._post(ShardEvent("open", self))

    def _sync_subscription(self) -> None:
        """Subscribe what is missing and correct any token in the wrong mode.

        On a reconnect KiteTicker has already re-sent subscribe + mode for what it
        tracks (subscribed_tokens), so this sends nothing unless the mode changed
        meanwhile; on the first open it subscribes everything and sets the mode
        explicitly rather than trusting the server's default.
        """
        ticker = self.ticker
        missing = [t for t in self.tokens if t not in ticker.subscribed_tokens]
        if missing:
            ticker.subscribe(missing)
            ticker.set_mode(self.mode, missing)
        wrong = [t for t in self.tokens if ticker.subscribed_tokens.get(t) != self.mode]
        if wrong:
            ticker.set_mode(self.mode, wrong)

    def _handle_error(self, ticker: KiteTicker, code: int | None, reason: Any) -> None:
        if code == 0:  # a {"type": "error"} text message from Kite, not a disconnect
            self._post(ShardEvent("kite_error", self, str(reason)))
        # Disconnect errors are followed by on_close, which handles them.

    def _handle_close(self, ticker: KiteTicker, code: int | None, reason: Any) -> None:
        if self._closing:
            self.state = ShardState.CLOSED
            self.closed.set()
            return
        match = _HANDSHAKE_STATUS.search(str(reason or ""))
        if match and int(match.group(1)) in _AUTH_STATUSES:
            # Retrying with this token would be refused forever: stop, and let the
            # feed fetch a new one. stop_retry() here beats the factory's retry().
            ticker.stop_retry()
            self.state = ShardState.AUTH_FAILED
            self._post(ShardEvent("auth_failed", self, self.access_token))
            return
        refused = certificate_failure(getattr(ticker.factory, "lost_reason", None))
        if refused:
            if self.state is not ShardState.CERTIFICATE_REJECTED:
                _log.error("%s: %s; not connecting to it", self.label, refused)
            self.state = ShardState.CERTIFICATE_REJECTED
            self._post(ShardEvent("lost", self, refused))
            return
        self.state = ShardState.RECONNECTING if self.opened_ever else ShardState.CONNECTING
        self._post(ShardEvent("lost", self, f"{code} {reason}"))

    def _handle_reconnect(self, ticker: KiteTicker, attempts: int) -> None:
        if self.state in (ShardState.CLOSED, ShardState.AUTH_FAILED):
            return
        self.attempts = attempts
        if self.state is not ShardState.CERTIFICATE_REJECTED:  # keep saying why until an open
            self.state = ShardState.CONNECTING if not self.opened_ever else ShardState.RECONNECTING
        self._post(ShardEvent("reconnecting", self, attempts))

    def _handle_noreconnect(self, ticker: KiteTicker) -> None:
        if self.state in (ShardState.CLOSED, ShardState.AUTH_FAILED):
            return
        self.state = ShardState.GAVE_UP
        self._post(ShardEvent("gave_up", self))

    def _handle_order_update(self, ticker: KiteTicker, order: Mapping[str, Any]) -> None:
        self._post(ShardEvent("order_update", self, dict(order)))
