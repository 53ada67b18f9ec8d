"""Each kiteconnect exception, and each raw `requests` failure it lets through, in base's family."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from kiteconnect import exceptions as kex

from Webapp.broker.base import (
    BrokerError,
    CircuitOpen,
    InputRejected,
    NetworkUnavailable,
    OrderRejected,
    RateLimited,
    TokenExpired,
)
from Webapp.broker.kite import KiteBroker
from Webapp.broker.kite_errors import is_outage, is_transient, map_error, maybe_applied

TOKEN = "secret-access-token-123"


@pytest.mark.parametrize(
    ("raised", "expected", "applied"),
    [
        (kex.TokenException("Incorrect `api_key` or `access_token`."), TokenExpired, False),
        (kex.InputException("Invalid `quantity`."), InputRejected, False),
        (kex.OrderException("Insufficient funds."), OrderRejected, False),
        (kex.NetworkException("Too many requests", code=429), RateLimited, False),
        (kex.NetworkException("Gateway timed out.", code=504), NetworkUnavailable, True),
        (kex.NetworkException("Service unavailable."), NetworkUnavailable, True),
        (kex.DataException("Couldn't parse the JSON response"), NetworkUnavailable, True),
        (kex.GeneralException("Something went wrong."), BrokerError, True),
        (kex.PermissionException("Insufficient permission"), BrokerError, False),
        (kex.KiteException("unclassified", code=418), BrokerError, False),
        (requests.ConnectTimeout("connect timed out"), NetworkUnavailable, False),
        (requests.ReadTimeout("read timed out"), NetworkUnavailable, True),
        (requests.exceptions.ChunkedEncodingError("cut"), NetworkUnavailable, True),
        (requests.exceptions.SSLError("bad certificate"), NetworkUnavailable, False),
        (requests.ConnectionError("Connection aborted."), NetworkUnavailable, True),
        (ValueError("a bug"), BrokerError, True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_each_exception_maps_to_one_broker_error(raised, expected, applied):
    error = map_error(raised, "place_order", "INFY (tag L1)")
    assert type(error) is expected
    assert error.message.startswith("place_order INFY (tag L1): ")
    assert maybe_applied(error) is applied
    if isinstance(error, NetworkUnavailable):
        assert error.maybe_applied is applied


def test_the_http_status_travels_with_the_error():
    assert map_error(kex.GeneralException("x", code=500), "orders").code == 500
    assert map_error(kex.NetworkException("x", code=429), "orders").code == 429


@pytest.mark.parametrize(
    ("error", "transient", "outage"),
    [
        (NetworkUnavailable("x", maybe_applied=True), True, True),
        (RateLimited("x", code=429), True, False),
        (BrokerError("x", code=500), True, True),
        (BrokerError("x", code=403), False, False),
        (InputRejected("x", code=400), False, False),
        (OrderRejected("x", code=500), False, False),  # an answer, even with 500
        (TokenExpired("x", code=403), False, False),
        (CircuitOpen("x"), False, False),
    ],
    ids=["network", "429", "500", "permission", "input", "order", "token", "circuit"],
)
def test_what_is_retried_and_what_opens_the_circuit(error, transient, outage):
    assert is_transient(error) is transient
    assert is_outage(error) is outage


def test_a_secret_in_a_message_is_redacted():
    error = map_error(kex.InputException(f"bad header token {TOKEN}"), "orders", secrets=[TOKEN])
    assert TOKEN not in error.message and "***" in error.message


# --- real socket failures through the official client ----------------------------------------


class RawServer:
    """A TCP server that misbehaves on purpose: `mode` says how it answers one request."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                if self.mode == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                elif self.mode == "close":
                    pass
                elif self.mode == "chunked_cut":
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b'Transfer-Encoding: chunked\r\n\r\n40\r\n{"status": "succ'
                    )
                elif self.mode == "silent":
                    self._done.wait()

    def close(self) -> None:
        self._done.set()
        self._sock.close()


@pytest.fixture
def raw_server(request) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


def broker_at(root: str, **kw) -> KiteBroker:
    kw.setdefault("max_attempts", 1)
    return KiteBroker("key", TOKEN, root=root, sleep=lambda s: None, timeout=0.3, **kw)


@pytest.mark.parametrize("raw_server", ["reset", "close", "chunked_cut", "silent"], indirect=True)
def test_a_failure_after_the_request_was_sent_may_have_been_applied(raw_server):
    with pytest.raises(NetworkUnavailable) as caught:
        broker_at(raw_server.url).orders()
    assert caught.value.maybe_applied is True
    assert caught.value.message.startswith("orders: ")
    assert TOKEN not in caught.value.message
    assert raw_server.requests == 1


def test_a_refused_connection_was_never_applied():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    with pytest.raises(NetworkUnavailable) as caught:
        broker_at(f"http://127.0.0.1:{port}").orders()
    assert caught.value.maybe_applied is False
