"""kitesim's REST server: the Kite Connect routes the app trades through, on one local root.

Point the unmodified client at it: `KiteConnect(api_key, root=sim.url)`, or take
`sim.client()`, already logged in. It speaks Kite's envelope
(`{"status": "success", "data": ...}`; errors as `{"status": "error", "message",
"error_type"}` with Kite's HTTP status, which kiteconnect raises as its exception
classes), reads form bodies, and serves the login flow, orders, GTTs, portfolio,
quotes, and — through `HistoricalSim` — the instrument dump and candles.
Trading state lives in `Exchange`; prices come from `set_price` or, when a
`TickerSim` is attached, from every price the ticker sends. Faults per route are
queued with `fail_next` (see rest_faults.py for the kinds).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, g, jsonify, redirect, request
from kiteconnect import KiteConnect
from werkzeug.serving import make_server

from tests.kitesim.exchange import DEFAULT_CASH, DEFAULT_USER_ID, Exchange, OrderBehaviour
from tests.kitesim.historical import INSTRUMENTS_CSV, HistoricalSim, HistRequest
from tests.kitesim.order_book import KiteError, input_error
from tests.kitesim.order_updates import OrderUpdates
from tests.kitesim.rest_faults import (
    DEFAULT_GTT_FAILURE,
    DEFAULT_REJECTION,
    ERRORS,
    Fault,
    FaultBoard,
)
from tests.kitesim.session import BAD_CREDENTIALS, Sessions
from tests.kitesim.ticker import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY, TickerSim
from Webapp.market.instruments import InstrumentMap, UnknownInstrument

_log = logging.getLogger(__name__)

DEFAULT_API_SECRET = "kitesim_api_secret"
_NO_AUTH = frozenset({"session.token", "session.invalidate", "login"})
_OWN_AUTH = frozenset({"instruments", "historical"})  # HistoricalSim checks these itself


@dataclass(frozen=True)
class RestRequest:
    """One request: `at` from the sim's clock on arrival; status None when no reply was sent."""

    at: float
    method: str
    route: str
    path: str
    status: int | None
    fault: str | None = None


class KiteRestSim:
    """A Kite REST server on 127.0.0.1 with an exchange behind it and fault switches in front."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        ticker: TickerSim | None = None,
        redirect_url: str | None = None,
        postback_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        instruments_csv: Path = INSTRUMENTS_CSV,
        cash: float = DEFAULT_CASH,
        user_id: str = DEFAULT_USER_ID,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host, self.port = host, port  # port 0: any free one
        self.api_key = api_key
        self.api_secret = api_secret
        self.ticker = ticker
        self.redirect_url = redirect_url
        self.clock = clock
        self.sessions = Sessions(
            api_key=api_key,
            api_secret=api_secret,
            access_token=access_token,
            user_id=user_id,
            now=now,
        )
        self.instruments = InstrumentMap.from_csv(instruments_csv)
        self.faults = FaultBoard()
        self.updates = OrderUpdates(
            user_id=user_id, api_secret=api_secret, ticker=ticker, postback_url=postback_url
        )
        self.exchange = Exchange(
            self.instruments,
            user_id=user_id,
            cash=cash,
            now=now,
            on_order_update=self.updates,
            gtt_order_behaviour=self._gtt_order_behaviour,
        )
        self.historical = HistoricalSim(
            api_key=api_key,
            access_token=access_token,
            clock=clock,
            instruments_csv=instruments_csv,
            authorize=lambda: self.sessions.authorized(request.headers.get("Authorization", "")),
        )
        self._lock = threading.Lock()
        self._requests: list[RestRequest] = []
        self._stopping = threading.Event()
        self._server = None
        self._threads: list[threading.Thread] = []
        self.app = self._make_app()
        if ticker is not None:
            ticker.add_access_token(access_token)
            ticker.add_price_listener(self._on_ticker_price)

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> KiteRestSim:
        """Serve on a free port; an attached ticker is started and stopped by its owner."""
        if self._server is not None:
            raise RuntimeError("kitesim REST is already running")
        self._stopping.clear()
        self._server = make_server(self.host, self.port, self.app, threaded=True)
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # stop() waits for one poll
                name="kitesim-rest",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()
        self.updates.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # ends held replies (latency, timeout) at once
        self.updates.stop()
        server.shutdown()
        server.server_close()
        for thread in self._threads:
            thread.join(5.0)

    def __enter__(self) -> KiteRestSim:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The `root` to give KiteConnect."""
        if self._server is None:
            raise RuntimeError("kitesim REST is not running")
        return f"http://{self.host}:{self._server.server_port}"

    def client(self, access_token: str | None = None, *, timeout: float = 10) -> KiteConnect:
        """The official client, logged in (with the newest access token) and pointed here."""
        kite = KiteConnect(self.api_key, root=self.url, timeout=timeout)
        kite.set_access_token(access_token or self.access_token)
        return kite

    # --- login ---------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        return self.sessions.access_token

    def login_url(self, redirect_params: str | None = None) -> str:
        """Kite's login page URL for this app, as kiteconnect's `login_url()` builds it."""
        query = {"api_key": self.api_key, "v": "3"}
        if redirect_params:
            query["redirect_params"] = redirect_params
        return f"{self.url}/connect/login?{urlencode(query)}"

    def issue_request_token(self) -> str:
        """A one-time request token, as if the user had logged in on Kite's page."""
        return self.sessions.issue_request_token()

    def expire_token(self, access_token: str | None = None) -> None:
        """End one session, or every session (Kite's early-morning expiry): REST and ticker."""
        for token in self.sessions.expire(access_token):
            if self.ticker is not None:
                self.ticker.expire_access_token(token)

    def renew_token(self, access_token: str) -> None:
        """A new day's login by other means: `access_token` is valid from now on."""
        self.sessions.renew(access_token)
        if self.ticker is not None:
            self.ticker.add_access_token(access_token)

    # --- prices and the book -----------------------------------------------------------

    def set_price(self, symbol_or_token: str | int, last_price: float) -> None:
        """A trade at `last_price` ("INFY", "NSE:INFY" or a token); through the ticker if any."""
        token = self.exchange.instrument(symbol_or_token).token
        if self.ticker is not None:
            self.ticker.set_price(token, last_price)  # reaches the exchange as a listener
        else:
            self.exchange.set_price(token, last_price)

    def ltp(self, symbol_or_token: str | int) -> float | None:
        return self.exchange.ltp(self.exchange.instrument(symbol_or_token).token)

    @property
    def order_book(self) -> list[dict[str, Any]]:
        """Every order today in Kite's shape, oldest first."""
        return self.exchange.orders_kite()

    def orders_placed(self, tag: str | None = None) -> list[dict[str, Any]]:
        """The orders placed today (optionally only those with `tag`), oldest first."""
        return [o for o in self.order_book if tag is None or o["tag"] == tag]

    @property
    def gtt_book(self) -> list[dict[str, Any]]:
        """Every GTT in Kite's shape, deleted ones included, newest first."""
        return self.exchange.gtts_kite(include_deleted=True)

    def add_holding(self, symbol_or_token: str | int, quantity: int, average_price: float) -> None:
        self.exchange.add_holding(symbol_or_token, quantity, average_price)

    def new_day(self) -> None:
        self.exchange.new_day()

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        """Block until `predicate()` holds, re-checked on every change to the book."""
        self.exchange.wait_until(predicate, timeout, what)

    # --- faults and records ------------------------------------------------------------

    @property
    def postback_url(self) -> str | None:
        """Where order updates are POSTed (None: nowhere); settable while running."""
        return self.updates.postback_url

    @postback_url.setter
    def postback_url(self, url: str | None) -> None:
        self.updates.postback_url = url

    @property
    def order_updates(self) -> list[dict[str, Any]]:
        """Every order update pushed, in order."""
        return self.updates.sent

    def fail_next(self, route: str, fault: str, times: int = 1, **kw: Any) -> None:
        """The next `times` requests on `route` suffer `fault` (see rest_faults.py)."""
        self.faults.add(route, fault, times, **kw)

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def requests(self) -> list[RestRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, route: str) -> list[RestRequest]:
        return [r for r in self.requests if r.route == route]

    def historical_requests(self) -> list[HistRequest]:
        return self.historical.historical_requests()

    # --- the HTTP app --------------------------------------------------------------

    def _make_app(self) -> Flask:
        app = Flask("kitesim_kite_rest")
        ex = self.exchange

        def route(rule: str, key: str, method: str, handler: Callable[..., Any]) -> None:
            endpoint = f"{method} {rule}"
            app.add_url_rule(rule, endpoint, self._wrap(key, handler), methods=[method])

        route("/session/token", "session.token", "POST", self._generate_session)
        route("/session/token", "session.invalidate", "DELETE", self._invalidate_session)
        route("/connect/login", "login", "GET", self._login)
        route("/user/profile", "profile", "GET", self.sessions.profile)
        route(
            "/user/margins",
            "margins",
            "GET",
            lambda: {"equity": ex.margins_kite(), "commodity": ex.commodity_margins_kite()},
        )
        route("/user/margins/<segment>", "margins", "GET", self._segment_margins)
        route("/orders", "orders", "GET", ex.orders_kite)
        route("/trades", "trades", "GET", ex.trades_kite)
        route("/orders/<order_id>", "order.info", "GET", ex.order_history)
        route("/orders/<order_id>/trades", "order.trades", "GET", ex.trades_kite)
        route("/orders/<variety>", "order.place", "POST", self._place_order)
        route("/orders/<variety>/<order_id>", "order.modify", "PUT", self._modify_order)
        route("/orders/<variety>/<order_id>", "order.cancel", "DELETE", self._cancel_order)
        route("/portfolio/positions", "positions", "GET", ex.positions_kite)
        route("/portfolio/holdings", "holdings", "GET", ex.holdings_kite)
        route("/quote/ltp", "quote.ltp", "GET", self._quote_ltp)
        route("/gtt/triggers", "gtt", "GET", ex.gtts_kite)
        route("/gtt/triggers", "gtt.place", "POST", self._place_gtt)
        route("/gtt/triggers/<trigger_id>", "gtt.info", "GET", self._gtt_info)
        route("/gtt/triggers/<trigger_id>", "gtt.modify", "PUT", self._modify_gtt)
        route("/gtt/triggers/<trigger_id>", "gtt.delete", "DELETE", self._delete_gtt)
        self.historical.add_routes(app, self._wrap)

        @app.errorhandler(404)
        @app.errorhandler(405)
        def not_found(error):
            return _error_body("GeneralException", f"Route not found: {request.path}"), error.code

        return app

    def _wrap(self, key: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def view(**kwargs: Any):
            arrived = self.clock()
            fault = self.faults.take(key)
            response, status = self._answer(key, handler, kwargs, fault)
            record = RestRequest(
                arrived, request.method, key, request.path, status, fault.kind if fault else None
            )
            with self._lock:
                self._requests.append(record)
            return response

        view.__name__ = key.replace(".", "_")
        return view

    def _answer(
        self, key: str, handler: Callable[..., Any], kwargs: dict, fault: Fault | None
    ) -> tuple[Any, int | None]:
        """The response and the status the client sees (None: it sees no reply)."""
        kind = fault.kind if fault else None
        if kind == "latency":
            self._stopping.wait(fault.seconds)
        if kind == "timeout" and not fault.applied:
            self._stopping.wait(fault.seconds)
            return (_error_body("NetworkException", "Gateway timed out."), 504), None
        if kind in ERRORS or kind == "error":
            error_type, status, message = fault.error()
            return (_error_body(error_type, message), status), status
        if key not in _NO_AUTH | _OWN_AUTH and not self.sessions.authorized(
            request.headers.get("Authorization", "")
        ):
            return (_error_body("TokenException", BAD_CREDENTIALS), 403), 403
        g.kitesim_behaviour = None
        if kind == "reject":
            g.kitesim_behaviour = OrderBehaviour(reject=fault.message or DEFAULT_REJECTION)
        elif kind == "partial":
            g.kitesim_behaviour = OrderBehaviour(partial=fault.filled)
        try:
            result = handler(**kwargs)
        except KiteError as exc:
            response = (_error_body(exc.error_type, exc.message), exc.status)
            status = exc.status
        else:
            if isinstance(result, Response):
                response, status = result, result.status_code
            elif isinstance(result, tuple):  # HistoricalSim's (body, status) errors
                response, status = result, result[1]
            else:
                response, status = jsonify({"status": "success", "data": result}), 200
        if kind == "timeout":
            self._stopping.wait(fault.seconds)
            return response, None
        if kind == "lost_reply":
            if fault.how == "504":
                return (_error_body("NetworkException", "Gateway timed out."), 504), 504
            self._drop_connection()
            return Response(status=500), None
        return response, status

    def _drop_connection(self) -> None:
        """Close the socket unanswered, as a reply lost between the OMS and the client."""
        sock = request.environ.get("werkzeug.socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # the client may have gone already
                sock.shutdown(socket.SHUT_RDWR)

    # --- handlers ------------------------------------------------------------------

    def _generate_session(self) -> dict[str, Any]:
        form = request.form
        session = self.sessions.generate(
            form.get("api_key", ""), form.get("request_token", ""), form.get("checksum", "")
        )
        if self.ticker is not None:
            self.ticker.add_access_token(session["access_token"])
        return session

    def _invalidate_session(self) -> bool:
        if request.args.get("api_key") != self.api_key:
            raise input_error("Invalid `api_key`.")
        token = request.args.get("access_token")
        if token:
            self.expire_token(token)
        return True

    def _login(self):
        if request.args.get("api_key") != self.api_key:
            raise input_error("Invalid `api_key`.")
        if not self.redirect_url:
            raise input_error("No redirect URL is registered for this app.")
        query = urlencode(
            {
                "action": "login",
                "type": "login",
                "status": "success",
                "request_token": self.issue_request_token(),
            }
        )
        extra = request.args.get("redirect_params")
        if extra:  # Kite hands the app's own parameters (its `state`) back this way
            query += "&" + extra
        separator = "&" if "?" in self.redirect_url else "?"
        return redirect(self.redirect_url + separator + query, code=302)

    def _segment_margins(self, segment: str) -> dict[str, Any]:
        if segment == "equity":
            return self.exchange.margins_kite()
        if segment == "commodity":
            return self.exchange.commodity_margins_kite()
        raise input_error("Invalid segment. Should be `equity` or `commodity`.")

    def _place_order(self, variety: str) -> dict[str, str]:
        order = self.exchange.place_order(variety, request.form.to_dict(), g.kitesim_behaviour)
        return {"order_id": order.order_id}

    def _modify_order(self, variety: str, order_id: str) -> dict[str, str]:
        self.exchange.modify_order(variety, order_id, request.form.to_dict())
        return {"order_id": order_id}

    def _cancel_order(self, variety: str, order_id: str) -> dict[str, str]:
        self.exchange.cancel_order(variety, order_id)
        return {"order_id": order_id}

    def _quote_ltp(self) -> dict[str, Any]:
        quotes = {}
        for key in request.args.getlist("i"):
            try:
                ins = self.exchange.instrument(int(key) if key.isdigit() else key)
            except UnknownInstrument:
                continue  # Kite leaves unknown instruments out of the answer
            last_price = self.exchange.ltp(ins.token)
            if last_price is not None:
                quotes[key] = {"instrument_token": ins.token, "last_price": last_price}
        return quotes

    def _place_gtt(self) -> dict[str, int]:
        return {"trigger_id": self.exchange.place_gtt(request.form.to_dict()).id}

    def _gtt_info(self, trigger_id: str) -> dict[str, Any]:
        return self.exchange.gtt_kite(_trigger_id(trigger_id))

    def _modify_gtt(self, trigger_id: str) -> dict[str, int]:
        gtt = self.exchange.modify_gtt(_trigger_id(trigger_id), request.form.to_dict())
        return {"trigger_id": gtt.id}

    def _delete_gtt(self, trigger_id: str) -> dict[str, int]:
        return {"trigger_id": self.exchange.delete_gtt(_trigger_id(trigger_id)).id}

    # --- prices in, order updates out ------------------------------------------------------

    def _on_ticker_price(self, token: int, last_price: float) -> None:
        try:
            self.exchange.set_price(token, last_price)
        except Exception:  # the ticker's caller must not fail for the exchange's sake
            _log.exception("kitesim: the exchange failed on a price of %s", token)

    def _gtt_order_behaviour(self) -> OrderBehaviour | None:
        fault = self.faults.take("gtt.trigger")
        if fault is None:
            return None
        if fault.kind == "reject":
            return OrderBehaviour(reject=fault.message or DEFAULT_REJECTION)
        if fault.kind == "failed":
            return OrderBehaviour(fail=fault.message or DEFAULT_GTT_FAILURE)
        return OrderBehaviour(partial=fault.filled)


def _error_body(error_type: str, message: str) -> Response:
    return jsonify({"status": "error", "message": message, "data": None, "error_type": error_type})


def _trigger_id(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise input_error("Invalid trigger ID.") from None
