"""kitesim's order updates as Kite pushes them: `UPDATE` for a modify or a partial fill.

Kite posts back COMPLETE, CANCELLED, REJECTED and UPDATE ("an open order is modified
or there's a partial fill"), and sends the same payloads over the ticker's websocket
besides every status of the order book.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import simple_websocket

INFY = "INFY"
WAIT_S = 5.0


@pytest.fixture
def sim(kite_exchange):
    return kite_exchange.rest


@pytest.fixture
def ticker_messages(kite_exchange) -> Iterator[queue.Queue[dict]]:
    """The `data` of every order message the ticker sends to one connected client."""
    ticker = kite_exchange.ticker
    ws = simple_websocket.Client.connect(
        f"{ticker.url}/?api_key={kite_exchange.api_key}&access_token={kite_exchange.access_token}"
    )
    ticker.wait_until(lambda: ticker.connection_count == 1, WAIT_S, "the client connected")
    messages: queue.Queue[dict] = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                message = ws.receive(timeout=0.1)
            except simple_websocket.ConnectionClosed:
                return
            if isinstance(message, str):
                body = json.loads(message)
                if body.get("type") == "order":
                    messages.put(body["data"])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield messages
    stop.set()
    reader.join(WAIT_S)
    ws.close()


@pytest.fixture
def postbacks(sim) -> Iterator[queue.Queue[dict]]:
    """Every postback kitesim POSTs, as it arrives."""
    received: queue.Queue[dict] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    sim.postback_url = f"http://127.0.0.1:{server.server_port}/postback"
    yield received
    sim.postback_url = None
    server.shutdown()
    server.server_close()


def take(messages: queue.Queue[dict], count: int) -> list[tuple[str, int]]:
    """(status, filled_quantity) of the next `count` messages."""
    return [
        (m["status"], m["filled_quantity"])
        for m in (messages.get(timeout=WAIT_S) for _ in range(count))
    ]


def partly_filled_then_modified(sim) -> str:
    """A LIMIT buy of 10 that fills 3, is modified to MARKET, and fills the rest."""
    kite = sim.client()
    sim.fail_next("order.place", "partial", filled=3)
    order_id = kite.place_order("regular", "NSE", INFY, "BUY", 10, "CNC", "LIMIT", price=1500.0)
    sim.set_price(INFY, 1499.0)
    kite.modify_order("regular", order_id, order_type="MARKET")
    return order_id


def test_the_ticker_sends_update_for_a_partial_fill_and_a_modify_besides_the_books_status(
    sim, ticker_messages
):
    partly_filled_then_modified(sim)

    assert take(ticker_messages, 6) == [
        ("OPEN", 0),
        ("UPDATE", 3),  # the partial fill
        ("OPEN", 3),
        ("UPDATE", 3),  # the modify to MARKET
        ("OPEN", 3),
        ("COMPLETE", 10),
    ]
    assert ticker_messages.empty()


def test_postbacks_are_update_for_a_partial_fill_and_a_modify_then_the_final_status(sim, postbacks):
    order_id = partly_filled_then_modified(sim)

    got = [postbacks.get(timeout=WAIT_S) for _ in range(3)]
    assert [(p["status"], p["filled_quantity"]) for p in got] == [
        ("UPDATE", 3),
        ("UPDATE", 3),
        ("COMPLETE", 10),
    ]
    assert {p["order_id"] for p in got} == {order_id}
    assert got[1]["order_type"] == "MARKET"
    assert [u["status"] for u in sim.order_updates] == [
        "OPEN", "UPDATE", "OPEN", "UPDATE", "OPEN", "COMPLETE"
    ]  # fmt: skip
