"""kitesim's REST half for candles: Kite's historical API and instrument dump on a local port.

Point the unmodified client at it with `KiteConnect(api_key, root=sim.url)` (or
`sim.client()`). It speaks Kite's envelope: `{"status": "success", "data": ...}`,
errors as `{"status": "error", "message": ..., "error_type": ...}` with Kite's HTTP
status, which kiteconnect turns into its exception classes. Candles are a
deterministic seeded walk per instrument token on the NSE calendar's bars; a
request over Kite's window for its interval is refused like Kite does. Every
request is recorded (with the injectable clock's time) and faults can be switched
on: fail the Nth historical request, or the next few, with any error type.
`KiteRestSim` (rest.py) serves these same routes beside the trading ones through
`add_routes`, with its own logins deciding who is authorized.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from flask import Flask, Response, jsonify, request
from kiteconnect import KiteConnect
from werkzeug.serving import make_server

from Webapp.market.calendar import MarketCalendar

try:  # the ticker half shares the login it accepts
    from tests.kitesim.ticker import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY
except ImportError:  # pragma: no cover - the ticker half is optional here
    DEFAULT_API_KEY, DEFAULT_ACCESS_TOKEN = "kitesim_api_key", "kitesim_access_token"

INSTRUMENTS_CSV = Path(__file__).resolve().parents[1] / "data" / "instruments_nse_sample.csv"

INTERVAL_MINUTES = {
    "minute": 1,
    "3minute": 3,
    "5minute": 5,
    "10minute": 10,
    "15minute": 15,
    "30minute": 30,
    "60minute": 60,
    "day": None,
}
# Kite's longest range per request, in days.
MAX_DAYS = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}
# Kite's HTTP status for each error type (429 comes as a NetworkException).
ERROR_STATUS = {
    "TokenException": 403,
    "PermissionException": 403,
    "InputException": 400,
    "DataException": 502,
    "NetworkException": 503,
    "GeneralException": 500,
    "OrderException": 500,
}
TOO_MANY_REQUESTS = ("NetworkException", 429, "Too many requests")


@dataclass(frozen=True)
class HistRequest:
    """One request the server saw. `at` is from the sim's clock."""

    at: float
    path: str
    status: int
    token: int | None = None
    interval: str | None = None
    from_: datetime | None = None  # naive, IST, as Kite reads it
    to: datetime | None = None
    continuous: str | None = None
    oi: str | None = None
    authorized: bool = False


@dataclass(frozen=True)
class Fault:
    error_type: str
    status: int
    message: str


class HistoricalSim:
    """A Kite REST server for `/instruments` and `/instruments/historical/<token>/<interval>`.

    Valid logins are `api_key` with `access_token` (Authorization: token key:token);
    anything else gets Kite's 403 TokenException. `clock` stamps recorded requests,
    so a test with a fake clock can check the request rate without waiting.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        clock: Callable[[], float] = time.monotonic,
        calendar: MarketCalendar | None = None,
        instruments_csv: Path = INSTRUMENTS_CSV,
        seed: int = 7,
        authorize: Callable[[], bool] | None = None,
    ) -> None:
        self.api_key = api_key
        self.access_token = access_token
        self.clock = clock
        self.calendar = calendar or MarketCalendar.nse()
        self.instruments_csv = instruments_csv
        self.seed = seed
        self._authorize = authorize  # decides logins instead of api_key/access_token
        self._lock = threading.Lock()
        self._requests: list[HistRequest] = []
        self._historical_count = 0
        self._faults_at: dict[int, Fault] = {}
        self._faults_next: list[Fault] = []
        self._expired: set[str] = set()
        self._server = None
        self._thread: threading.Thread | None = None
        self.app = self._make_app()

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> HistoricalSim:
        if self._server is not None:
            raise RuntimeError("kitesim REST is already running")
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for one poll
            name="kitesim-rest",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> HistoricalSim:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The `root` to give KiteConnect."""
        if self._server is None:
            raise RuntimeError("kitesim REST is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    def client(self, access_token: str | None = None) -> KiteConnect:
        """The official client, logged in and pointed here."""
        kite = KiteConnect(self.api_key, root=self.url, timeout=10)
        kite.set_access_token(access_token or self.access_token)
        return kite

    # --- records and faults --------------------------------------------------------

    @property
    def requests(self) -> list[HistRequest]:
        with self._lock:
            return list(self._requests)

    def historical_requests(self) -> list[HistRequest]:
        return [r for r in self.requests if r.interval is not None]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail_request(
        self, n: int, error_type: str = "GeneralException", message: str | None = None,
        status: int | None = None,
    ) -> None:  # fmt: skip
        """Fail the `n`th historical request (counted from the sim's start, 1-based)."""
        with self._lock:
            self._faults_at[n] = _fault(error_type, message, status)

    def fail_next(
        self, error_type: str = "GeneralException", times: int = 1, message: str | None = None,
        status: int | None = None,
    ) -> None:  # fmt: skip
        """Fail the next `times` historical requests."""
        with self._lock:
            self._faults_next.extend([_fault(error_type, message, status)] * times)

    def too_many_requests(self, times: int = 1) -> None:
        """Answer the next `times` historical requests with Kite's HTTP 429."""
        error_type, status, message = TOO_MANY_REQUESTS
        self.fail_next(error_type, times, message, status)

    def expire_token(self) -> None:
        """The session ends as at Kite's daily expiry: requests with the token now get 403.

        `client()` still hands out the expired token; `renew_token` issues a new one.
        """
        with self._lock:
            self._expired.add(self.access_token)

    def renew_token(self, access_token: str) -> None:
        """A new day's login: `access_token` is accepted from now on."""
        self.access_token = access_token

    # --- candles -------------------------------------------------------------------

    def candles(self, token: int, interval: str, start: datetime, end: datetime) -> list[list]:
        """Kite's candle rows for bar starts in [start, end] (naive IST), deterministic."""
        rows: list[list] = []
        minutes = INTERVAL_MINUTES[interval]
        for day in self.calendar.trading_days(start.date(), end.date()):
            rng = random.Random(f"{self.seed}:{token}:{interval}:{day.isoformat()}")
            price = _day_open(token, day, self.seed)
            if minutes is None:
                bars = [(datetime.combine(day, datetime.min.time()), 375)]
            else:
                first = datetime(day.year, day.month, day.day, 9, 15)
                session_end = datetime(day.year, day.month, day.day, 15, 30)
                bars = []
                bar = first
                while bar < session_end:
                    bars.append((bar, minutes))
                    bar += timedelta(minutes=minutes)
            for bar_start, length in bars:
                open_ = price
                close = _tick(open_ * (1 + rng.gauss(0, 0.0012) * math.sqrt(length)))
                high = _tick(max(open_, close) * (1 + abs(rng.gauss(0, 0.0006))))
                low = _tick(min(open_, close) * (1 - abs(rng.gauss(0, 0.0006))))
                price = close
                if start <= bar_start <= end:
                    stamp = bar_start.strftime("%Y-%m-%dT%H:%M:%S+0530")
                    rows.append([stamp, open_, high, low, close, rng.randrange(1_000, 500_000)])
        return rows

    # --- the HTTP app --------------------------------------------------------------

    def _make_app(self) -> Flask:
        app = Flask("kitesim_rest")
        self.add_routes(app)
        return app

    def add_routes(
        self, app: Flask, wrap: Callable[[str, Callable], Callable] = lambda key, view: view
    ) -> None:
        """Register `/instruments[/<exchange>]` and the historical route on `app`.

        `wrap(route_key, view)` may wrap each view ("instruments", "historical").
        """

        def instruments(exchange: str | None = None):
            if not self._authorized():
                return self._record_error(_fault("TokenException", None, None))
            text = self.instruments_csv.read_text(encoding="utf-8")
            if exchange:
                header, *lines = text.splitlines()
                text = "\n".join([header, *(ln for ln in lines if ln.endswith("," + exchange))])
            self._record(HistRequest(self.clock(), request.path, 200, authorized=True))
            return Response(text + "\n", mimetype="text/csv")

        def historical(token: int, interval: str):
            return self._historical(token, interval)

        wrapped = wrap("instruments", instruments)
        app.add_url_rule("/instruments", "instruments", wrapped, methods=["GET"])
        app.add_url_rule("/instruments/<exchange>", "instruments", wrapped, methods=["GET"])
        app.add_url_rule(
            "/instruments/historical/<int:token>/<interval>",
            "historical",
            wrap("historical", historical),
            methods=["GET"],
        )

    def _authorized(self) -> bool:
        if self._authorize is not None:
            return self._authorize()
        header = request.headers.get("Authorization", "")
        token = self.access_token
        return header == f"token {self.api_key}:{token}" and token not in self._expired

    def _historical(self, token: int, interval: str):
        args = request.args
        record = {
            "path": request.path,
            "token": token,
            "interval": interval,
            "continuous": args.get("continuous"),
            "oi": args.get("oi"),
            "authorized": self._authorized(),
        }
        with self._lock:
            self._historical_count += 1
            fault = self._faults_at.pop(self._historical_count, None)
            if fault is None and self._faults_next:
                fault = self._faults_next.pop(0)
        try:
            record["from_"], record["to"] = _when(args.get("from")), _when(args.get("to"))
        except ValueError:
            fault = fault or _fault("InputException", "invalid `from` or `to` date", None)
        if fault is None and not record["authorized"]:
            fault = _fault("TokenException", None, None)
        if fault is None and interval not in INTERVAL_MINUTES:
            fault = _fault("InputException", f"invalid interval: {interval}", None)
        if fault is None:
            start, end = record["from_"], record["to"]
            if end < start:
                fault = _fault("InputException", "invalid from date: from is after to", None)
            elif end - start > timedelta(days=MAX_DAYS[interval]):
                fault = _fault(
                    "InputException", f"interval exceeds max limit: {MAX_DAYS[interval]} days", None
                )
        if fault is not None:
            return self._record_error(fault, **record)
        rows = self.candles(token, interval, record["from_"], record["to"])
        if args.get("oi") == "1":
            rows = [[*row, 0] for row in rows]
        self._record(HistRequest(self.clock(), status=200, **record))
        return jsonify({"status": "success", "data": {"candles": rows}})

    def _record(self, entry: HistRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def _record_error(self, fault: Fault, **record):
        record.setdefault("path", request.path)
        self._record(HistRequest(self.clock(), status=fault.status, **record))
        body = {"status": "error", "message": fault.message, "data": None}
        body["error_type"] = fault.error_type
        return jsonify(body), fault.status


def _fault(error_type: str, message: str | None, status: int | None) -> Fault:
    if message is None:
        message = {
            "TokenException": "Incorrect `api_key` or `access_token`.",
            "GeneralException": "Something went wrong; please try again.",
            "NetworkException": "Gateway timed out.",
            "InputException": "Invalid input.",
            "PermissionException": "Insufficient permission for that call.",
            "DataException": "Unparseable response.",
        }.get(error_type, "Error.")
    return Fault(error_type, status or ERROR_STATUS.get(error_type, 500), message)


def _when(raw: str | None) -> datetime:
    """Kite's from/to: `yyyy-mm-dd hh:mm:ss` or `yyyy-mm-dd` (naive, IST)."""
    if not raw:
        raise ValueError("missing date")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt)
        except ValueError:
            continue
    raise ValueError(f"bad date {raw!r}")


def _day_open(token: int, day: date, seed: int) -> float:
    """A smooth, bounded, deterministic price level per token and day."""
    base = 100 + (token % 4_000)
    phase = (token % 97) / 97 * 2 * math.pi
    ordinal = day.toordinal()
    wave = 0.15 * math.sin(ordinal / 45 + phase) + 0.05 * math.sin(ordinal / 7 + seed)
    return _tick(base * (1 + wave))


def _tick(price: float) -> float:
    return round(price * 20) / 20
