"""/healthz reports database, feed and engine; 503 when any is down."""

from __future__ import annotations

import queue

import pytest

from Webapp import create_app
from Webapp.execution.runtime import Runtime
from Webapp.execution.trading_view import TRADING_TOPIC, TradingState


@pytest.fixture
def running(app, settings):
    runtime = Runtime.build(settings.model_copy(update={"sim_ticks_per_second": 500}))
    ticked = queue.Queue()
    runtime.store.subscribe(lambda quote: ticked.put(quote))
    runtime.start()
    ticked.get(timeout=5)  # the feed is live
    app.extensions["ladder"].runtime = runtime
    yield runtime
    runtime.stop()


def test_healthz_is_503_before_the_runtime_starts(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "down"
    assert body["database"]["ok"] is True
    assert body["feed"] == {"ok": False, "detail": "not started"}
    assert body["engine"] == {"ok": False, "detail": "not started"}


def test_healthz_is_200_with_database_feed_and_engine_up(client, running):
    response = client.get("/healthz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["feed"]["state"] == "running" and body["feed"]["ticks"] > 0
    assert body["engine"]["state"] == "running"


def test_healthz_is_503_when_the_feed_stops(client, running):
    running.feed.stop()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["feed"]["state"] == "stopped"


def test_healthz_is_503_when_the_engine_fails(client, running):
    views = queue.Queue()
    running.bus.subscribe(TRADING_TOPIC, lambda _t, view: views.put(view))
    running.engine.submit(object())  # an event the engine does not know: it fails closed
    while (view := views.get(timeout=5)).state is not TradingState.FAILED:
        pass
    response = client.get("/healthz")
    assert response.status_code == 503
    engine = response.get_json()["engine"]
    assert engine["trading"] == "failed"
    assert "unknown engine event" in engine["detail"]
    assert "unknown engine event" in view.detail


def test_healthz_is_503_when_the_database_is_unreachable(settings, tmp_path):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not an SQLite database " * 100)
    broken = settings.model_copy(update={"database_url": f"sqlite:///{corrupt}"})
    app = create_app({"TESTING": True}, settings=broken)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"]["ok"] is False


@pytest.mark.pg
def test_healthz_checks_a_real_postgresql_market_database(settings, pg_url):
    app = create_app(
        {"TESTING": True}, settings=settings.model_copy(update={"market_database_url": pg_url})
    )
    body = app.test_client().get("/healthz").get_json()
    assert body["market_database"] == {"ok": True, "backend": "postgresql"}


@pytest.mark.pg
def test_healthz_reports_an_unreachable_market_database_without_its_url(settings, pg_url):
    # Same server, a database that does not exist: a real refusal from PostgreSQL.
    bad_url = pg_url.rsplit("/", 1)[0] + "/no_such_database_ladder"
    app = create_app(
        {"TESTING": True}, settings=settings.model_copy(update={"market_database_url": bad_url})
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["market_database"]["ok"] is False
    assert "no_such_database_ladder" not in response.text
