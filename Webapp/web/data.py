"""The data page: candle coverage, a chart per symbol and timeframe, and CSV import (admins)."""

from __future__ import annotations

import math
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, current_app, render_template, request
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileRequired, MultipleFileField
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional, Regexp, ValidationError

from Webapp.market.candle import Candle, Timeframe
from Webapp.market.csv_import import ImportOptions
from Webapp.market.import_jobs import ImportBusyError, ImportJob, ImportRunner
from Webapp.market.ohlcv import OHLCVStore
from Webapp.web.auth import admin_required, wants_fragment
from Webapp.web.extensions import socketio
from Webapp.web.timefmt import ist

bp = Blueprint("data", __name__, url_prefix="/data")

IMPORT_ROOM = "data-import"
IMPORT_EVENT = "data_import"
STORE_KEY = "ladder.market_store"
RUNNER_KEY = "ladder.data_imports"
DEFAULT_CHART_CANDLES = 1000
MAX_CHART_CANDLES = 5000

# lightweight-charts draws every time on a UTC axis and has no time-zone option.
# Adding India's fixed +05:30 (no daylight saving) to the epoch seconds makes
# its labels read as IST wall-clock time; the browser's own zone never matters.
IST_OFFSET_S = 5 * 3600 + 30 * 60

_setup_lock = threading.Lock()


# --- the store and the import runner, one of each per app -------------------------------


def market_store(app: Flask | None = None) -> OHLCVStore:
    """The app's OHLCV store, created and migrated on first use."""
    app = app or current_app._get_current_object()
    store = app.extensions.get(STORE_KEY)
    if store is None:
        with _setup_lock:
            store = app.extensions.get(STORE_KEY)
            if store is None:
                Path(app.instance_path).mkdir(mode=0o700, parents=True, exist_ok=True)
                settings = app.extensions["ladder"].settings
                store = OHLCVStore(settings.resolved_market_database_url)
                store.migrate()
                app.extensions[STORE_KEY] = store
    return store


def import_runner(app: Flask | None = None) -> ImportRunner:
    """The app's import runner (one import at a time); progress goes to IMPORT_ROOM."""
    app = app or current_app._get_current_object()
    runner = app.extensions.get(RUNNER_KEY)
    if runner is None:
        store = market_store(app)
        with _setup_lock:
            runner = app.extensions.get(RUNNER_KEY)
            if runner is None:
                runner = ImportRunner(
                    store, Path(app.instance_path) / "imports", listener=push_import_progress
                )
                app.extensions[RUNNER_KEY] = runner
    return runner


def current_import(app: Flask | None = None) -> ImportJob | None:
    """The running import, else the last one since the process started."""
    app = app or current_app._get_current_object()
    runner = app.extensions.get(RUNNER_KEY)
    return None if runner is None else runner.current


def import_payload(job: ImportJob) -> dict[str, Any]:
    """What the browser gets over Socket.IO: the job's snapshot with times as IST text."""
    snapshot = job.snapshot()
    for key in ("created_at", "started_at", "finished_at"):
        snapshot[key] = ist(snapshot[key])
    return snapshot


def push_import_progress(job: ImportJob) -> None:
    """ImportRunner listener: runs on the import thread, emits to the room."""
    socketio.emit(IMPORT_EVENT, import_payload(job), to=IMPORT_ROOM)


# --- coverage and chart data ------------------------------------------------------------


def coverage_rows(store: OHLCVStore) -> list:
    """First, last, count and gaps per series, by symbol then timeframe (1m to 1d)."""
    return store.coverage()


def series_index(rows: list) -> dict[str, list[str]]:
    """{symbol: [timeframes it has]} for the chart's selectors."""
    index: dict[str, list[str]] = {}
    for row in rows:
        index.setdefault(row.symbol, []).append(str(Timeframe(row.timeframe)))
    return index


def chart_time(ts: datetime) -> int:
    """A candle's start as the chart wants it: epoch seconds shifted to read as IST."""
    return int(ts.timestamp()) + IST_OFFSET_S


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def chart_payload(store: OHLCVStore, symbol: str, timeframe: Timeframe, limit: int) -> dict:
    """The last `limit` candles of one series, in lightweight-charts' shapes."""
    candles: list[Candle] = sorted(store.last_candles(symbol, timeframe, limit), key=lambda c: c.ts)
    payload: dict[str, Any] = {
        "symbol": symbol,
        "timeframe": str(timeframe),
        "intraday": timeframe is not Timeframe.D1,
        "time_offset_s": IST_OFFSET_S,
        "candles": [],
        "volume": [],
        "ema": {"ema_9": [], "ema_21": [], "ema_50": [], "ema_200": []},
    }
    for candle in candles:
        time = chart_time(candle.ts)
        payload["candles"].append(
            {
                "time": time,
                "open": candle.open,
                "high": candle.high,
                "low": candle.low,
                "close": candle.close,
            }
        )
        payload["volume"].append(
            {"time": time, "value": candle.volume, "up": candle.close >= candle.open}
        )
        for name, series in payload["ema"].items():
            value = getattr(candle, name)
            if _finite(value):
                series.append({"time": time, "value": value})
    return payload


# --- the import form ------------------------------------------------------------------------


def _upper_strip(value: str | None) -> str | None:
    return value.strip().upper() if isinstance(value, str) else value


class ImportForm(FlaskForm):
    files = MultipleFileField(
        "CSV files",
        validators=[FileRequired("choose one or more CSV files"), FileAllowed(["csv"], "CSV only")],
        render_kw={"accept": ".csv,text/csv"},
    )
    symbol = StringField(
        "Symbol",
        filters=[_upper_strip],
        validators=[
            Optional(),
            Regexp(r"^[A-Z0-9&_.-]{1,40}$", message="letters, digits and & _ . - (max 40)"),
        ],
    )
    timeframe = SelectField(
        "Timeframe",
        choices=[SelectChoice("", "from the file")] + [SelectChoice(tf.value) for tf in Timeframe],
        default="",
    )

    def validate_symbol(self, field) -> None:
        if field.data and len(self.files.data or []) > 1:
            raise ValidationError("a symbol override needs exactly one file")

    def import_options(self) -> ImportOptions | None:
        overrides = {}
        if self.symbol.data:
            overrides["symbol"] = self.symbol.data
        if self.timeframe.data:
            overrides["timeframe"] = Timeframe(self.timeframe.data)
        return ImportOptions(**overrides) if overrides else None


_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9&._-]+")


def _basename(filename: str | None) -> str:
    return (filename or "").replace("\\", "/").rsplit("/", 1)[-1]


def upload_name(filename: str | None) -> str:
    """A file name safe to save, keeping what the importer reads (M&M_5min.csv stays so)."""
    return _UNSAFE_NAME_CHARS.sub("_", _basename(filename)).lstrip(".") or "upload.csv"


def start_import(form: ImportForm, submitted_by: str) -> ImportJob:
    """Save the uploads under the instance folder and start the import in the background.

    Raises ImportBusyError while another import runs (nothing is saved then).
    """
    runner = import_runner()
    if runner.busy:
        raise ImportBusyError("an import is already running; wait for it to finish")
    job_id, folder = runner.new_upload_dir()
    saved: list[tuple[str, Path]] = []
    try:
        for index, upload in enumerate(form.files.data):
            # One sub-folder per file: two uploads with the same name must not collide.
            target = folder / str(index) / upload_name(upload.filename)
            target.parent.mkdir()
            upload.save(target)
            saved.append((_basename(upload.filename) or target.name, target))
        return runner.submit(job_id, saved, form.import_options(), submitted_by=submitted_by)
    except BaseException:
        runner.discard_upload_dir(job_id)
        raise


# --- views --------------------------------------------------------------------------------


def _render_page(
    form: ImportForm | None = None, message: str = "", message_kind: str = "", status: int = 200
):
    rows = coverage_rows(market_store())
    index = series_index(rows)
    symbol = request.args.get("symbol", "")
    timeframe = request.args.get("timeframe", "")
    if symbol not in index and index:
        symbol = next(iter(index))
    if timeframe not in index.get(symbol, []):
        timeframe = index[symbol][0] if symbol in index else ""
    return (
        render_template(
            "data.html",
            rows=rows,
            series=index,
            symbol=symbol,
            timeframe=timeframe,
            form=form or ImportForm(),
            job=_job_view(),
            message=message,
            message_kind=message_kind,
        ),
        status,
    )


def _render_import(form: ImportForm, message: str = "", message_kind: str = "", status: int = 200):
    if not wants_fragment():
        return _render_page(form, message, message_kind, status)
    return (
        render_template(
            "partials/data_import.html",
            form=form,
            job=_job_view(),
            message=message,
            message_kind=message_kind,
        ),
        status,
    )


def _job_view() -> dict | None:
    job = current_import()
    return None if job is None else job.snapshot()


@bp.errorhandler(413)
def upload_too_large(_exc):
    limit_mb = (current_app.config.get("MAX_CONTENT_LENGTH") or 0) // (1024 * 1024)
    message = f"The upload is larger than {limit_mb} MB; import the files in smaller batches."
    return _render_import(ImportForm(formdata=None), message, "error", 413)


@bp.get("/")
def index():
    return _render_page()


@bp.get("/coverage")
def coverage():
    """htmx: the coverage table, refreshed after an import."""
    rows = coverage_rows(market_store())
    return render_template("partials/data_coverage.html", rows=rows, series=series_index(rows))


@bp.get("/candles")
def candles():
    """JSON for the chart: ?symbol=&timeframe=&limit= (the newest `limit` candles)."""
    symbol = request.args.get("symbol", "").strip()
    try:
        timeframe = Timeframe(request.args.get("timeframe", ""))
    except ValueError:
        choices = ", ".join(tf.value for tf in Timeframe)
        return {"error": f"timeframe must be one of {choices}"}, 400
    if not symbol:
        return {"error": "symbol is required"}, 400
    limit = request.args.get("limit", DEFAULT_CHART_CANDLES, type=int)
    if limit is None or not 1 <= limit <= MAX_CHART_CANDLES:
        return {"error": f"limit must be between 1 and {MAX_CHART_CANDLES}"}, 400
    return chart_payload(market_store(), symbol, timeframe, limit)


@bp.get("/import/status")
def import_status():
    """htmx: the import's progress; polls itself every 2 s only while an import runs."""
    return render_template("partials/data_import_status.html", job=_job_view())


@bp.post("/import")
@admin_required
def upload():
    form = ImportForm()
    if not form.validate_on_submit():
        return _render_import(form, status=400)
    try:
        job = start_import(form, current_user.username)
    except ImportBusyError as exc:
        return _render_import(form, str(exc).capitalize() + ".", "error", 409)
    names = ", ".join(f.name for f in job.files)
    return _render_import(ImportForm(formdata=None), f"Importing {names}.", "success", 202)
