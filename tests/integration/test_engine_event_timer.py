"""The engine's measurement hook (the benchmarks' `event_timer`) on the threaded paper wiring."""

from __future__ import annotations

import queue
import threading

from tests.trading_rig import DEFAULTS, T0
from Webapp.event_bus import EventBus
from Webapp.execution.builders import Driver, build_trader, paper_account
from Webapp.execution.clock import SimulatedClock
from Webapp.execution.commands import Command, CommandKind
from Webapp.execution.engine import Engine
from Webapp.execution.gateway import OrderGateway
from Webapp.market.ltp_store import LTPStore
from Webapp.storage import migrate
from Webapp.storage.db import make_engine, make_session_factory

KINDS = {"prices", "timer", "command", "result", "view"}


def test_the_event_timer_brackets_each_piece_of_engine_work_on_the_engine_thread(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    db = make_engine(url)
    sessions = make_session_factory(db)
    clock, store = SimulatedClock(T0), LTPStore()
    broker = paper_account(
        sessions, DEFAULTS, clock=clock.now, store=store, account="paper", starting_cash=1e6
    )
    engine = Engine(store, EventBus())
    gateway = OrderGateway(broker, engine.submit, clock=clock)
    trader = build_trader(
        Driver.PAPER,
        broker=broker,
        submit=gateway.send,
        sessions=sessions,
        params=DEFAULTS,
        clock=clock,
        store=store,
        universe=["INFY"],
        account="paper",
    )
    broker.on_order_update(engine.submit)
    work: queue.Queue = queue.Queue()

    def event_timer(kind: str, event: object):
        work.put(("start", kind, event, threading.current_thread().name))
        return lambda: work.put(("end", kind, event, threading.current_thread().name))

    engine.attach(trader, gateway, autostart=False, event_timer=event_timer)
    engine.start()
    start = Command(CommandKind.START, "tester")
    try:
        engine.command(start)  # a command; reconciling sends calls, whose results come back
        store.update("INFY", 1500.0)  # ticks ready
        seen: list[tuple] = []
        while not KINDS.issubset(kind for edge, kind, _, _ in seen if edge == "end"):
            seen.append(work.get(timeout=10))  # the timer comes about once a second
        outcome = start.wait(10)
    finally:
        engine.stop()
        db.dispose()

    assert outcome is not None and outcome.ok
    # Never nested: every start is followed by the end of the same piece of work.
    starts, ends = seen[::2], seen[1::2]
    assert [s[0] for s in starts] == ["start"] * len(starts)
    assert [(e[0], e[1], e[2]) for e in ends] == [("end", s[1], s[2]) for s in starts]
    assert {s[3] for s in seen} == {"engine"}
    assert ("start", "command", start, "engine") in starts
    assert all(event is None for _, kind, event, _ in seen if kind in ("timer", "view"))
