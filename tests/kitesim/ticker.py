"""kitesim's ticker: a local websocket server that speaks Kite's streaming protocol to KiteTicker.

Point the unmodified client at it with `KiteTicker(api_key, access_token,
root=sim.url)`. The server is wsproto (the sans-IO websocket library under
simple-websocket) on a threaded TCP server: one thread per connection reads,
and any thread may send. Given an `ssl.SSLContext` as `tls`, it speaks wss://
instead. Tests drive it through the control methods of `TickerSim`;
`python -m tests.kitesim` runs it standalone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from tests.kitesim.packets import (
    HEARTBEAT,
    MODE_QUOTE,
    MODES,
    Tick,
    encode_frame,
    encode_packet,
)

_log = logging.getLogger(__name__)

DEFAULT_API_KEY = "kitesim_api_key"
DEFAULT_ACCESS_TOKEN = "kitesim_access_token"
MAX_TOKENS_PER_CONNECTION = 3000

GARBAGE = {
    # The packet count promises 3 packets and the frame ends after one length:
    # kiteconnect's parser raises struct.error on it.
    "truncated": b"\x00\x03\x00\x2c" + bytes(10),
    # A well-framed packet of a length no mode has: parsers skip it.
    "unknown_length": encode_frame([bytes(13)]),
    # A text message that is not JSON: kiteconnect ignores it.
    "text": "{not json",
}


@dataclass(frozen=True)
class ClientInfo:
    """What one connected client has told the server, as of the moment it was asked."""

    id: int
    api_key: str
    access_token: str
    subscriptions: dict[int, str]  # instrument token -> mode
    received: tuple[dict[str, Any], ...]  # every control message, in order
    connected_at: datetime


class _Client:
    """One accepted websocket. `lock` serialises wsproto state and socket writes."""

    def __init__(self, client_id: int, sock: socket.socket | _TlsSocket, ws: WSConnection) -> None:
        self.id = client_id
        self.sock = sock
        self.ws = ws
        self.lock = threading.Lock()
        self.api_key = ""
        self.access_token = ""
        self.modes: dict[int, str] = {}  # guarded by the sim's lock
        self.received: list[dict[str, Any]] = []
        self.connected_at = datetime.now(UTC)
        self.closed = False

    def send(self, event: Event) -> bool:
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(self.ws.send(event))
            except Exception:  # a peer gone mid-send is routine here, not a test failure
                self.closed = True
                return False
        return True

    def drop(self) -> None:
        """Close the TCP connection with no websocket close frame, like a network cut."""
        with self.lock:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class _TlsSocket:
    """The server side of TLS over an accepted socket, read by one thread while others send.

    An ssl.SSLSocket must not be read and written from two threads at once
    (OpenSSL's connection objects are not thread-safe), and the sim reads in
    the connection's thread while heartbeats and prices are sent from others;
    so TLS runs on memory buffers, each use of the SSLObject under one lock.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self._sock = sock
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._lock = threading.Lock()

    def handshake(self, timeout: float) -> None:
        """Complete the TLS handshake; ssl.SSLError or OSError if the client refuses or goes."""
        self._sock.settimeout(timeout)
        try:
            while True:
                with self._lock:
                    try:
                        self._tls.do_handshake()
                        done = True
                    except ssl.SSLWantReadError:
                        done = False
                    finally:
                        self._flush()  # the next flight, or the alert of a failure
                if done:
                    return
                data = self._sock.recv(65536)
                if not data:
                    raise ConnectionError("the client closed the connection during the handshake")
                with self._lock:
                    self._incoming.write(data)
        finally:
            self._sock.settimeout(None)

    def recv(self, size: int) -> bytes:
        """Decrypted bytes, b"" once the client has gone; blocks until there is either."""
        while True:
            with self._lock:
                data = self._read_buffered(size)
            if data is not None:
                return data
            received = self._sock.recv(size)
            if not received:
                return b""
            with self._lock:
                self._incoming.write(received)

    def sendall(self, data: bytes) -> None:
        with self._lock:
            self._tls.write(data)
            self._flush()

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def _read_buffered(self, size: int) -> bytes | None:
        """What the buffered records decrypt to; None if they hold no data yet."""
        chunks: list[bytes] = []
        try:
            while chunk := self._tls.read(size):
                chunks.append(chunk)
            closed = True  # read() gives b"" after the client's close_notify
        except ssl.SSLWantReadError:
            closed = False
        self._flush()  # TLS may answer while reading (a key update)
        if chunks:
            return b"".join(chunks)
        return b"" if closed else None

    def _flush(self) -> None:
        if pending := self._outgoing.read():
            self._sock.sendall(pending)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sim: TickerSim) -> None:
        self.sim = sim
        super().__init__(address, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.sim._serve(self.request)  # type: ignore[attr-defined]


class TickerSim:
    """A Kite ticker server on 127.0.0.1 with switches for the faults a feed must survive.

    Valid logins are `api_key` with any of `access_tokens`; anything else gets
    HTTP 403 on the handshake, as Kite answers an expired token. Prices set
    with `set_price`/`set_prices` go at once to every client subscribed to the
    instrument, in that client's mode for it. A heartbeat (one byte) goes to
    every client each `heartbeat_interval_s` (None: never).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        access_tokens: Iterable[str] = (DEFAULT_ACCESS_TOKEN,),
        heartbeat_interval_s: float | None = 1.0,
        snapshot_on_subscribe: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.tls = tls
        self.api_key = api_key
        self.heartbeat_interval_s = heartbeat_interval_s
        self.snapshot_on_subscribe = snapshot_on_subscribe
        self._requested_port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._access_tokens = set(access_tokens)
        self._ticks: dict[int, Tick] = {}
        self._clients: dict[int, _Client] = {}
        self._next_client_id = 1
        self._silent = False
        self._answer_pings = True
        self._refusing = False
        self._refuse_status: int | None = None
        self.connections_total = 0  # handshakes accepted
        self.rejected_total = 0  # handshakes answered 403 (bad or expired login)
        self.refused_total = 0  # connections turned away by refuse_connections()
        self.tls_failures_total = 0  # TLS handshakes that failed (the client refused our cert)
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._price_listeners: list[Callable[[int, float], None]] = []

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> TickerSim:
        if self._server is not None:
            raise RuntimeError("kitesim ticker is already running")
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), self)
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kitesim-ticker",
            daemon=True,
        )
        self._threads = [serve]
        if self.heartbeat_interval_s:
            self._threads.append(
                threading.Thread(target=self._heartbeats, name="kitesim-heartbeat", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        self.drop_all()
        for thread in self._threads:
            thread.join(5.0)

    def __enter__(self) -> TickerSim:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("kitesim ticker is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The `root` to give KiteTicker."""
        scheme = "wss" if self.tls is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    # --- prices ------------------------------------------------------------------

    def set_price(self, token: int, last_price: float, *, send: bool = True, **fields: Any) -> Tick:
        """Record a trade for `token` and (by default) send it to subscribed clients.

        `fields` are any other Tick fields (volume, exchange_timestamp, bids, …).
        Unless given, open/high/low/close follow the price, and the trade and
        exchange times are now.
        """
        return self.set_prices({token: last_price}, send=send, **fields)[token]

    def set_prices(
        self, prices: Mapping[int, float], *, send: bool = True, **fields: Any
    ) -> dict[int, Tick]:
        """`set_price` for several instruments; each client gets one frame with all its packets."""
        now = datetime.now(UTC).replace(microsecond=0)
        updated = {}
        with self._lock:
            for token, last_price in prices.items():
                previous = self._ticks.get(token) or Tick(
                    token,
                    last_price,
                    open=last_price,
                    high=last_price,
                    low=last_price,
                    close=last_price,
                )
                tick = replace(
                    previous,
                    last_price=last_price,
                    high=max(previous.high, last_price),
                    low=min(previous.low, last_price),
                    last_trade_time=now,
                    exchange_timestamp=now,
                )
                updated[token] = replace(tick, **fields) if fields else tick
            self._ticks.update(updated)
            listeners = list(self._price_listeners)
        # Listeners (kitesim's exchange) act before the tick goes out, so a client that
        # has seen a price can count on the orders and GTTs it crossed being settled.
        for listener in listeners:
            for token, tick in updated.items():
                listener(token, tick.last_price)
        if send:
            self._send_ticks(updated)
        return updated

    def tick(self, token: int) -> Tick | None:
        """The instrument's current state, as the next packet would carry it."""
        with self._lock:
            return self._ticks.get(token)

    def broadcast(self, tokens: Iterable[int] | None = None) -> None:
        """Send the current state of `tokens` (default: all known) to every subscribed client."""
        with self._lock:
            chosen = self._ticks if tokens is None else {t: self._ticks[t] for t in tokens}
            chosen = dict(chosen)
        self._send_ticks(chosen)

    def add_price_listener(self, listener: Callable[[int, float], None]) -> None:
        """Call `listener(token, last_price)` for every price set, sent or not."""
        with self._lock:
            self._price_listeners.append(listener)

    def remove_price_listener(self, listener: Callable[[int, float], None]) -> None:
        with self._lock:
            if listener in self._price_listeners:
                self._price_listeners.remove(listener)

    # --- other messages ------------------------------------------------------------

    def send_heartbeat(self) -> None:
        """A 1-byte binary message to every client (skipped while silent)."""
        self._send_to_all(BytesMessage(data=HEARTBEAT))

    def send_order_update(self, order: Mapping[str, Any]) -> None:
        """`{"type": "order", "data": order}` to every client, as Kite posts order updates."""
        self._send_to_all(TextMessage(data=json.dumps({"type": "order", "data": dict(order)})))

    def send_error(self, message: str) -> None:
        """`{"type": "error", "data": message}`; KiteTicker reports it as on_error with code 0."""
        self._send_to_all(TextMessage(data=json.dumps({"type": "error", "data": message})))

    def send_garbage(self, kind: str = "truncated") -> None:
        """A malformed message to every client; kinds: truncated, unknown_length, text."""
        if kind not in GARBAGE:
            raise ValueError(f"garbage kind must be one of {sorted(GARBAGE)}, got {kind!r}")
        payload = GARBAGE[kind]
        event = TextMessage(data=payload) if isinstance(payload, str) else BytesMessage(payload)
        self._send_to_all(event, even_if_silent=True)

    # --- faults ---------------------------------------------------------------------

    def silence(self, *, answer_pings: bool = True) -> None:
        """Send nothing (ticks, heartbeats, text) until `resume()`; sockets stay open.

        With answer_pings=False websocket pings go unanswered too, like a dead peer.
        """
        with self._lock:
            self._silent = True
            self._answer_pings = answer_pings

    def resume(self) -> None:
        with self._lock:
            self._silent = False
            self._answer_pings = True

    def drop_all(self) -> int:
        """Cut every connection without a close frame; returns how many were cut."""
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            client.drop()
        return len(clients)

    def refuse_connections(self, status: int | None = None) -> None:
        """Turn new connections away: closed at once (None) or answered with HTTP `status`."""
        with self._lock:
            self._refusing = True
            self._refuse_status = status

    def accept_connections(self) -> None:
        with self._lock:
            self._refusing = False
            self._refuse_status = None

    def add_access_token(self, token: str) -> None:
        with self._lock:
            self._access_tokens.add(token)

    def expire_access_token(self, token: str, *, disconnect: bool = True) -> None:
        """Make `token` invalid (new handshakes get 403) and cut the clients using it."""
        with self._lock:
            self._access_tokens.discard(token)
            using = [c for c in self._clients.values() if c.access_token == token]
        if disconnect:
            for client in using:
                client.drop()

    # --- inspection -------------------------------------------------------------------

    def clients(self) -> list[ClientInfo]:
        """Every open connection, oldest first."""
        with self._lock:
            return [
                ClientInfo(
                    c.id,
                    c.api_key,
                    c.access_token,
                    dict(c.modes),
                    tuple(c.received),
                    c.connected_at,
                )
                for c in self._clients.values()
            ]

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def subscriptions(self) -> dict[int, str]:
        """Token -> mode over all clients (a token on two connections shows one of them)."""
        with self._lock:
            return {t: m for c in self._clients.values() for t, m in c.modes.items()}

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        """Block until `predicate()` is true, re-checked on each connection or subscription change.

        Raises TimeoutError naming `what` after `timeout` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(f"kitesim: {what} not reached within {timeout}s")

    # --- internals ---------------------------------------------------------------------

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _heartbeats(self) -> None:
        assert self.heartbeat_interval_s
        while not self._stopping.wait(self.heartbeat_interval_s):
            self.send_heartbeat()

    def _send_to_all(self, event: Event, *, even_if_silent: bool = False) -> None:
        with self._lock:
            if self._silent and not even_if_silent:
                return
            clients = list(self._clients.values())
        for client in clients:
            client.send(event)

    def _send_ticks(self, ticks: Mapping[int, Tick], only: _Client | None = None) -> None:
        with self._lock:
            if self._silent:
                return
            clients = [only] if only is not None else list(self._clients.values())
            batches = [
                (
                    client,
                    [(tick, client.modes[t]) for t, tick in ticks.items() if t in client.modes],
                )
                for client in clients
            ]
        for client, batch in batches:
            if batch:
                frame = encode_frame(encode_packet(tick, mode) for tick, mode in batch)
                client.send(BytesMessage(data=frame))

    def _serve(self, tcp: socket.socket) -> None:
        """Run one connection: TLS and websocket handshakes, then control messages till closed."""
        with self._lock:
            refusing, refuse_status = self._refusing, self._refuse_status
            if refusing:
                self.refused_total += 1
        if refusing and refuse_status is None:
            self._notify()
            return
        sock: socket.socket | _TlsSocket = tcp
        if self.tls is not None:
            sock = _TlsSocket(tcp, self.tls)
            try:
                sock.handshake(timeout=5.0)
            except OSError as exc:  # ssl.SSLError included: the client refused the certificate
                _log.info("kitesim: TLS handshake failed: %s", exc)
                with self._lock:
                    self.tls_failures_total += 1
                    self._changed.notify_all()
                return
        with self._lock:
            client = _Client(self._next_client_id, sock, WSConnection(ConnectionType.SERVER))
            self._next_client_id += 1
        text_parts: list[str] = []
        try:
            while not client.closed:
                try:
                    data = sock.recv(65536)
                except OSError:
                    break
                try:
                    with client.lock:
                        client.ws.receive_data(data or None)
                        events = list(client.ws.events())
                except RemoteProtocolError as exc:
                    _log.info("kitesim: dropping a client that broke the protocol: %s", exc)
                    break
                for event in events:
                    if isinstance(event, Request):
                        if not self._handshake(client, event, refuse_status):
                            return
                    elif isinstance(event, TextMessage):
                        text_parts.append(event.data)
                        if event.message_finished:
                            self._on_control(client, "".join(text_parts))
                            text_parts.clear()
                    elif isinstance(event, Ping):
                        with self._lock:
                            answer = self._answer_pings
                        if answer:
                            client.send(event.response())
                    elif isinstance(event, CloseConnection):
                        client.send(event.response())
                        return
                if not data:
                    break
        finally:
            with self._lock:
                client.closed = True
                self._clients.pop(client.id, None)
                self._changed.notify_all()

    def _handshake(self, client: _Client, request: Request, refuse_status: int | None) -> bool:
        query = parse_qs(urlsplit(request.target).query)
        api_key = query.get("api_key", [""])[0]
        access_token = query.get("access_token", [""])[0]
        with self._lock:
            valid = api_key == self.api_key and access_token in self._access_tokens
            if refuse_status is None and not valid:
                self.rejected_total += 1
        if refuse_status is not None or not valid:
            status = refuse_status or 403
            body = json.dumps(
                {
                    "status": "error",
                    "message": "Incorrect `api_key` or `access_token`."
                    if status == 403
                    else "kitesim refuses connections",
                    "error_type": "TokenException" if status == 403 else "NetworkException",
                }
            ).encode()
            headers = [(b"content-type", b"application/json")]
            client.send(RejectConnection(status_code=status, headers=headers, has_body=True))
            client.send(RejectData(data=body))
            self._notify()
            return False
        client.api_key, client.access_token = api_key, access_token
        if not client.send(AcceptConnection()):
            return False
        with self._lock:
            self._clients[client.id] = client
            self.connections_total += 1
            self._changed.notify_all()
        return True

    def _on_control(self, client: _Client, text: str) -> None:
        """Handle `{"a": "subscribe"|"unsubscribe"|"mode", "v": ...}` from a client."""
        try:
            message = json.loads(text)
            action, value = message["a"], message["v"]
            if action == "mode":
                mode, tokens = value
                if mode not in MODES:
                    raise ValueError(f"unknown mode {mode!r}")
            else:
                mode, tokens = None, value
            tokens = [int(t) for t in tokens]
            if action not in ("subscribe", "unsubscribe", "mode"):
                raise ValueError(f"unknown action {action!r}")
        except (ValueError, KeyError, TypeError) as exc:
            client.send(TextMessage(data=json.dumps({"type": "error", "data": f"{exc}"})))
            return
        error = ""
        with self._lock:
            client.received.append(message)
            if action == "subscribe":
                new = [t for t in tokens if t not in client.modes]
                room = MAX_TOKENS_PER_CONNECTION - len(client.modes)
                if len(new) > room:
                    error = f"subscription limit of {MAX_TOKENS_PER_CONNECTION} tokens exceeded"
                    new = new[: max(room, 0)]
                client.modes.update(dict.fromkeys(new, MODE_QUOTE))
            elif action == "unsubscribe":
                for token in tokens:
                    client.modes.pop(token, None)
            else:
                for token in tokens:
                    if token in client.modes:
                        client.modes[token] = mode or MODE_QUOTE
            snapshot = {t: self._ticks[t] for t in tokens if t in self._ticks}
            self._changed.notify_all()
        if error:
            client.send(TextMessage(data=json.dumps({"type": "error", "data": error})))
        if self.snapshot_on_subscribe and action != "unsubscribe" and snapshot:
            self._send_ticks(snapshot, only=client)
