"""The engine thread: coalesces ticks into price events, and fails closed on a bug."""

from __future__ import annotations

import queue

import pytest

from Webapp.event_bus import EventBus
from Webapp.execution.engine import ENGINE_TOPIC, PRICES_TOPIC, Engine, EngineState
from Webapp.market.ltp_store import LTPStore


@pytest.fixture
def parts():
    store, bus = LTPStore(), EventBus()
    engine = Engine(store, bus)
    prices, states = queue.Queue(), queue.Queue()
    bus.subscribe(PRICES_TOPIC, lambda _t, changed: prices.put(changed))
    bus.subscribe(ENGINE_TOPIC, lambda _t, payload: states.put(payload))
    yield store, engine, prices, states
    engine.stop()


def collect_until(prices: queue.Queue, latest: dict[str, float]) -> list[dict]:
    events, seen = [], {}
    while seen != latest:
        changed = prices.get(timeout=5)
        events.append(changed)
        seen.update({s: q.ltp for s, q in changed.items()})
    return events


def test_engine_publishes_the_latest_price_of_every_symbol_that_ticked(parts):
    store, engine, prices, _ = parts
    engine.start()
    for i in range(300):
        store.update(f"SYM{i % 7}", 100.0 + i)
    latest = {s: q.ltp for s, q in store.snapshot().items()}
    events = collect_until(prices, latest)
    # Coalesced: far fewer events than ticks, never a symbol twice in one event.
    assert len(events) < 300
    assert latest == {f"SYM{k}": 100.0 + max(i for i in range(300) if i % 7 == k) for k in range(7)}


def test_ticks_before_start_are_not_lost(parts):
    store, engine, prices, _ = parts
    store.update("INFY", 1500.0)
    engine.start()
    store.update("TCS", 3000.0)
    assert collect_until(prices, {"INFY": 1500.0, "TCS": 3000.0})


def test_engine_announces_running_then_stopped(parts):
    _, engine, _, states = parts
    engine.start()
    assert states.get(timeout=5)["state"] == "running"
    engine.stop()
    assert states.get(timeout=5)["state"] == "stopped"
    assert engine.status().state is EngineState.STOPPED


def test_engine_fails_closed_on_an_unknown_event(parts):
    _, engine, _, states = parts
    engine.start()
    states.get(timeout=5)
    engine.submit("not an event")
    failed = states.get(timeout=5)
    assert failed["state"] == "failed"
    assert "unknown engine event" in failed["detail"]
    assert engine.status().state is EngineState.FAILED


def test_engine_cannot_start_twice(parts):
    _, engine, _, _ = parts
    engine.start()
    with pytest.raises(RuntimeError):
        engine.start()
