"""The data page: coverage, chart JSON, and CSV import with progress (admins only)."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, csrf_token
from Webapp.market.calendar import IST
from Webapp.market.candle import Candle, Timeframe
from Webapp.market.import_jobs import JobState
from Webapp.web import data, data_sockets
from Webapp.web.extensions import socketio

DAILY_DIR = SHARED_DATA / "nse-daily-2020-2025"
FIVE_MIN_DIR = SHARED_DATA / "nse-5min-2026"
IST_OFFSET_S = 19800


@pytest.fixture
def settings(settings, tmp_path):
    return settings.model_copy(
        update={"market_database_url": f"sqlite:///{tmp_path / 'market.db'}"}
    )


@pytest.fixture
def market(app):
    store = data.market_store(app)
    yield store
    store.dispose()


def five_min_candles(symbol: str, count: int, *, day: int = 20, emas: bool = False) -> list:
    start = datetime(2026, 5, day, 9, 15, tzinfo=IST).astimezone(UTC)
    candles = []
    for i in range(count):
        price = 100.0 + i
        ema = {"ema_9": price - 1, "ema_21": price - 2} if emas and i >= 8 else {}
        candles.append(
            Candle(
                symbol,
                Timeframe.M5,
                start + timedelta(minutes=5 * i),
                price,
                price + 2,
                price - 1,
                price + 1,
                1000 + i,
                **ema,
            )
        )
    return candles


def kite_csv(rows: int, *, bad_line: int | None = None) -> bytes:
    """A Kite-layout 5m CSV; with `bad_line`, that file line has high below open."""
    lines = ["timestamp,open,high,low,close,volume"]
    start = datetime(2026, 5, 20, 9, 15, tzinfo=IST)
    for i in range(rows):
        ts = (start + timedelta(minutes=5 * i)).isoformat(sep=" ")
        price = 200 + i
        high = price - 5 if len(lines) + 1 == bad_line else price + 2
        lines.append(f"{ts},{price},{high},{price - 1},{price + 1},{500 + i}")
    return ("\n".join(lines) + "\n").encode()


def page_token(client) -> str:
    return csrf_token(client.get("/data/").text)


def upload(client, files: list[tuple[bytes, str]], **fields):
    form = {
        "csrf_token": page_token(client),
        "files": [(io.BytesIO(content), name) for content, name in files],
        **fields,
    }
    return client.post(
        "/data/import",
        data=form,
        content_type="multipart/form-data",
        headers={"HX-Request": "true"},
    )


def finished_job(app):
    job = data.current_import(app)
    assert job is not None
    assert job.wait(timeout=30), "the import did not finish"
    return job


# --- coverage and chart ---------------------------------------------------------------------


def test_page_shows_coverage_with_first_and_last_in_ist(admin_client, market):
    market.bulk_load(five_min_candles("INFY", 12) + five_min_candles("TCS", 3))

    page = admin_client.get("/data/")

    assert page.status_code == 200
    assert 'id="data-coverage"' in page.text
    assert 'data-symbol="INFY" data-timeframe="5m"' in page.text
    assert "2026-05-20 09:15" in page.text  # 03:45 UTC shown as IST
    assert "2026-05-20 10:10" in page.text  # the 12th bar
    assert "lightweight-charts.standalone.production.js" in page.text
    partial = admin_client.get("/data/coverage")
    assert partial.status_code == 200
    assert 'id="data-coverage"' in partial.text
    assert "TCS" in partial.text


def test_empty_store_says_so(admin_client, market):
    page = admin_client.get("/data/")
    assert "No candles stored yet" in page.text


def test_candles_json_has_the_stored_series_with_emas_and_ist_shifted_times(admin_client, market):
    candles = five_min_candles("INFY", 12, emas=True)
    market.bulk_load(candles)

    body = admin_client.get("/data/candles?symbol=INFY&timeframe=5m&limit=10").get_json()

    newest = candles[-10:]
    assert [c["time"] for c in body["candles"]] == [
        int(c.ts.timestamp()) + IST_OFFSET_S for c in newest
    ]
    # The chart's UTC axis then reads 09:25 IST for the third candle.
    shown = datetime.fromtimestamp(body["candles"][0]["time"], UTC)
    assert shown.strftime("%H:%M") == "09:25"
    assert body["candles"][0] == {
        "time": body["candles"][0]["time"],
        "open": newest[0].open,
        "high": newest[0].high,
        "low": newest[0].low,
        "close": newest[0].close,
    }
    assert [v["value"] for v in body["volume"]] == [c.volume for c in newest]
    assert [p["value"] for p in body["ema"]["ema_9"]] == [c.ema_9 for c in candles[8:]]
    assert body["ema"]["ema_200"] == []
    assert body["intraday"] is True


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("symbol=INFY&timeframe=7m", "timeframe"),
        ("timeframe=5m", "symbol"),
        ("symbol=INFY&timeframe=5m&limit=0", "limit"),
    ],
)
def test_candles_json_refuses_bad_queries(admin_client, market, query, message):
    response = admin_client.get(f"/data/candles?{query}")
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_candles_json_needs_a_login(client, market):
    response = client.get(
        "/data/candles?symbol=INFY&timeframe=5m", headers={"Accept": "application/json"}
    )
    assert response.status_code == 401


# --- roles ------------------------------------------------------------------------------------


def test_viewer_sees_the_page_but_not_the_form_and_cannot_upload(viewer_client, market):
    page = viewer_client.get("/data/")
    assert page.status_code == 200
    assert 'id="data-import-form"' not in page.text
    assert "Only admins can import" in page.text

    response = upload(viewer_client, [(kite_csv(5), "INFY_5min.csv")])

    assert response.status_code == 403
    assert data.current_import(viewer_client.application) is None
    assert market.coverage() == []


def test_upload_without_csrf_token_is_refused(admin_client, market):
    response = admin_client.post(
        "/data/import",
        data={"files": [(io.BytesIO(kite_csv(5)), "INFY_5min.csv")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert data.current_import(admin_client.application) is None


# --- import ---------------------------------------------------------------------------------


def test_admin_upload_imports_the_csv_and_coverage_shows_it(app, admin_client, market):
    response = upload(admin_client, [(kite_csv(20), "INFY_5min.csv")])

    assert response.status_code == 202
    assert "Importing INFY_5min.csv" in response.text
    job = finished_job(app)
    assert job.state is JobState.DONE
    (row,) = market.coverage()
    assert (row.symbol, str(row.timeframe), row.count) == ("INFY", "5m", 20)
    status = admin_client.get("/data/import/status").text
    assert "imported" in status
    assert "every 2s" not in status  # polling stops once the import ended
    assert "INFY" in admin_client.get("/data/coverage").text
    # The uploaded copy is removed once imported.
    uploads = Path(app.instance_path) / "imports"
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))


def test_symbol_and_timeframe_overrides_apply(app, admin_client, market):
    response = upload(admin_client, [(kite_csv(6), "export.csv")], symbol="m&m", timeframe="5m")

    assert response.status_code == 202
    assert finished_job(app).state is JobState.DONE
    assert [(r.symbol, str(r.timeframe)) for r in market.coverage()] == [("M&M", "5m")]


def test_a_symbol_override_with_two_files_is_a_form_error(app, admin_client, market):
    response = upload(
        admin_client,
        [(kite_csv(5), "A_5min.csv"), (kite_csv(5), "B_5min.csv")],
        symbol="INFY",
    )
    assert response.status_code == 400
    assert "exactly one file" in response.text
    assert data.current_import(app) is None


def test_a_bad_csv_reports_its_line_numbers_and_stores_nothing(app, admin_client, market):
    response = upload(admin_client, [(kite_csv(10, bad_line=4), "INFY_5min.csv")])

    assert response.status_code == 202
    job = finished_job(app)
    assert job.state is JobState.FAILED
    status = admin_client.get("/data/import/status").text
    assert "refused" in status
    assert "INFY_5min.csv:4:" in status
    assert "Nothing from this file was stored" in status
    assert market.coverage() == []


def test_one_bad_file_does_not_stop_the_good_one(app, admin_client, market):
    upload(
        admin_client,
        [(kite_csv(10, bad_line=2), "TCS_5min.csv"), (kite_csv(8), "INFY_5min.csv")],
    )

    job = finished_job(app)

    assert [f.state for f in job.files] == [JobState.FAILED, JobState.DONE]
    assert [r.symbol for r in market.coverage()] == ["INFY"]


def test_a_second_upload_while_one_runs_is_refused(app, admin_client, market):
    runner = data.import_runner(app)
    real_importer = runner.importer
    release = threading.Event()
    entered = threading.Event()

    def slow_importer(*args, **kwargs):
        entered.set()
        assert release.wait(10)
        return real_importer(*args, **kwargs)

    runner.importer = slow_importer
    try:
        assert upload(admin_client, [(kite_csv(5), "INFY_5min.csv")]).status_code == 202
        assert entered.wait(10)
        running = admin_client.get("/data/import/status").text
        assert "every 2s" in running  # the fallback polls while the import runs

        second = upload(admin_client, [(kite_csv(5), "TCS_5min.csv")])

        assert second.status_code == 409
        assert "already running" in second.text
    finally:
        release.set()
    job = finished_job(app)
    assert [f.name for f in job.files] == ["INFY_5min.csv"]
    assert [r.symbol for r in market.coverage()] == ["INFY"]


def test_real_files_import_with_the_row_counts_of_the_data_readme(app, admin_client, market):
    daily = DAILY_DIR / "INFY_2020-10-01_to_2025-09-30.csv"
    five = FIVE_MIN_DIR / "INFY_5min.csv"
    if not (daily.is_file() and five.is_file()):
        pytest.skip(f"real NSE data not found under {SHARED_DATA}")
    daily_rows = daily.read_text().count("\n") - 1

    response = upload(
        admin_client, [(daily.read_bytes(), daily.name), (five.read_bytes(), five.name)]
    )

    assert response.status_code == 202
    job = finished_job(app)
    assert job.state is JobState.DONE, job.snapshot()
    counts = {(r.symbol, str(r.timeframe)): r.count for r in market.coverage()}
    assert counts == {("INFY", "1d"): daily_rows, ("INFY", "5m"): 1650}
    body = admin_client.get("/data/candles?symbol=INFY&timeframe=5m&limit=75").get_json()
    assert len(body["candles"]) == 75
    first = datetime.fromtimestamp(body["candles"][0]["time"], UTC)
    assert first.strftime("%H:%M") == "09:15"  # the last session's first bar, in IST
    assert all(p["value"] > 0 for p in body["ema"]["ema_200"])


# --- Socket.IO --------------------------------------------------------------------------------


def test_anonymous_socket_cannot_join_the_import_room(app, market):
    sio = socketio.test_client(app, flask_test_client=app.test_client())
    assert not sio.is_connected()
    with pytest.raises(RuntimeError):
        sio.emit(data_sockets.JOIN_EVENT, {}, callback=True)


def test_logged_in_socket_joins_and_hears_the_import_progress(app, admin_client, market):
    sio = socketio.test_client(app, flask_test_client=admin_client)
    assert sio.is_connected()
    ack = sio.emit(data_sockets.JOIN_EVENT, {}, callback=True)
    assert ack == {"ok": True, "job": None}
    sio.get_received()

    upload(admin_client, [(kite_csv(20), "INFY_5min.csv")])
    finished_job(app)

    events = [e["args"][0] for e in sio.get_received() if e["name"] == data.IMPORT_EVENT]
    assert events, "no progress pushed to the room"
    assert events[-1]["state"] == "done"
    assert events[-1]["files"][0]["rows"] == 20
    assert {e["state"] for e in events} >= {"running", "done"}
    # A socket that joins later starts in step with the last import.
    late = socketio.test_client(app, flask_test_client=admin_client)
    assert late.emit(data_sockets.JOIN_EVENT, {}, callback=True)["job"]["state"] == "done"
    sio.disconnect()
    late.disconnect()


def test_an_upload_over_the_size_limit_is_refused_with_a_message(app, admin_client, market):
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    response = upload(admin_client, [(kite_csv(20) * 3000, "INFY_5min.csv")])
    assert response.status_code == 413
    assert "larger than 1 MB" in response.text
    assert data.current_import(app) is None
