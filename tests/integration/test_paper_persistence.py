"""PaperBroker on the migrated app DB: restarts continue exactly, replays are identical, and
a GTT fires once even when ticks arrive from several threads (or brokers) at the same time."""

from __future__ import annotations

import threading
from dataclasses import asdict

import pytest
from sqlalchemy import update

from tests.unit.paper_support import (
    SYMBOL,
    Clock,
    Recorder,
    bought,
    limit,
    market,
    memory_sessions,
    params,
    shares,
    single_gtt,
)
from Webapp.broker.base import GttState, InputRejected, OrderState, Side
from Webapp.broker.paper import PaperBroker
from Webapp.storage import migrate
from Webapp.storage.db import make_engine, make_session_factory, transaction
from Webapp.storage.paper_models import PaperGtt

STOP = single_gtt(975.0, 970.10, 1000.0, 10)


@pytest.fixture
def app_db(tmp_path):
    """The URL of a migrated app DB file; engines made from it are disposed after the test."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def open_db():
    """Open sessions on a database URL, as a restarted process would: a fresh engine each time."""
    engines = []

    def factory(url):
        engine = make_engine(url)
        engines.append(engine)
        return make_session_factory(engine)

    yield factory
    for engine in engines:
        engine.dispose()


def books(broker: PaperBroker):
    """Everything a caller can see of the account, less the last prices (kept in memory:
    after a restart the engine's LTP store supplies them again)."""
    return (
        broker.orders(),
        broker.gtts(),
        [(h.symbol, h.quantity, h.average_price) for h in broker.holdings()],
        [(p.symbol, p.quantity, p.average_price) for p in broker.positions()],
        broker.margins(),
        broker.summary(),
    )


def start_broker(sessions, clock, **kwargs) -> PaperBroker:
    return PaperBroker(
        sessions, params(), clock=clock, starting_cash=kwargs.pop("cash", 100_000.0), **kwargs
    )


def trade_a_little(broker: PaperBroker) -> None:
    bought(broker, 10, 1000.0)
    broker.place_gtt(STOP)
    broker.place_order(limit(Side.BUY, 2, 990.0, tag="RESTING1"))
    broker.on_price(SYMBOL, 995.0)


def test_a_new_broker_on_the_same_db_continues_exactly_where_the_last_stopped(app_db, open_db):
    clock = Clock()
    first = start_broker(open_db(app_db), clock, seed=3)
    trade_a_little(first)
    before = books(first)
    del first

    # starting cash and seed only open a new account: the old one keeps its own
    again = start_broker(open_db(app_db), clock, cash=1.0, seed=99)
    assert books(again) == before
    assert again.find_order_by_tag("RESTING1").state is OrderState.OPEN

    again.on_price(SYMBOL, 974.0)  # the GTT placed before the restart still fires
    (gtt,) = again.gtts()
    assert gtt.state is GttState.TRIGGERED
    sell = again.order_history(gtt.results[0].order_id)
    assert sell[0].order_id == "3000000003"  # ids carry on from the stored counter
    assert sell[-1].state is OrderState.FILLED
    again.on_price(SYMBOL, 990.0)  # and the resting buy fills after the restart
    assert again.find_order_by_tag("RESTING1").state is OrderState.FILLED
    after = books(again)
    del again

    third = start_broker(open_db(app_db), clock, seed=3)
    third.on_price(SYMBOL, 960.0)  # triggered before: never again
    assert books(third) == after


def test_a_trigger_interrupted_before_its_order_places_the_order_on_restart(app_db, open_db):
    clock = Clock()
    sessions = open_db(app_db)
    first = start_broker(sessions, clock)
    bought(first, 10, 1000.0)
    gtt_id = first.place_gtt(STOP)
    del first
    # A crash between the two commits of a trigger: TRIGGERED written, no order yet.
    with transaction(sessions) as session:
        session.execute(
            update(PaperGtt)
            .where(PaperGtt.gtt_id == gtt_id)
            .values(state=GttState.TRIGGERED.value, triggered_leg=0)
        )

    prices = {SYMBOL: 972.0}
    again = start_broker(open_db(app_db), clock, ltp=prices.get)
    (result,) = again.get_gtt(gtt_id).results
    filled = again.order_history(result.order_id)[-1]
    assert (filled.state, filled.average_price) == (OrderState.FILLED, 971.50)
    assert shares(again) == 0


def run_session(sessions, seed: int) -> tuple:
    """One fixed morning of trading; returns what it produced and what it pushed."""
    clock = Clock()
    broker = start_broker(sessions, clock, seed=seed)
    updates = Recorder()
    broker.on_order_update(updates)
    for second, price in enumerate([1000.0, 1004.0, 1011.5, 1008.0, 990.0, 960.0, 966.0]):
        clock.advance(10)
        broker.on_price(SYMBOL, price)
        if second == 0:
            broker.place_order(market(Side.BUY, 10, tag="P1"))
            broker.place_gtt(single_gtt(975.0, 970.10, 1000.0, 10))
        if second == 2:
            broker.place_order(market(Side.BUY, 5, tag="P2"))
            broker.place_gtt(single_gtt(986.0, 981.0, 1011.5, 5))
    clock.advance(40)
    broker.check_timeouts()
    return books(broker), [asdict(u) for u in updates.updates]


def test_the_same_clock_seed_and_prices_give_identical_orders_fills_and_cash(open_db, tmp_path):
    results = []
    for run in range(2):
        url = f"sqlite:///{tmp_path / f'run{run}.db'}"
        migrate.upgrade(url)
        results.append(run_session(open_db(url), seed=11))
    assert results[0] == results[1]
    (orders, gtts, *_), _ = results[0]
    assert [g.state for g in gtts] == [GttState.TRIGGERED, GttState.TRIGGERED]
    assert [o.order_id for o in orders][:2] == ["11000000001", "11000000002"]


def test_the_seed_changes_the_ids_and_nothing_else():
    (orders_a, _, _, _, _, books_a), _ = run_session(memory_sessions(), seed=1)
    (orders_b, _, _, _, _, books_b), _ = run_session(memory_sessions(), seed=2)
    assert [o.order_id for o in orders_a] != [o.order_id for o in orders_b]
    assert [(o.state, o.average_price) for o in orders_a] == [
        (o.state, o.average_price) for o in orders_b
    ]
    assert books_a == books_b


def test_accounts_in_one_db_do_not_see_each_other(app_db, open_db):
    sessions = open_db(app_db)
    paper = start_broker(sessions, Clock(), account="paper")
    backtest = start_broker(sessions, Clock(), account="backtest-1", cash=5_000.0)
    bought(paper, 10, 1000.0)
    assert backtest.orders() == [] and shares(backtest) == 0
    assert backtest.summary().cash == 5_000.0
    with pytest.raises(InputRejected, match="no such order"):
        backtest.order_history(paper.orders()[0].order_id)


# --- concurrency ---------------------------------------------------------------------------


def test_a_gtt_fires_once_when_ticks_cross_it_from_many_threads_at_once(app_db, open_db):
    broker = start_broker(open_db(app_db), Clock())
    bought(broker, 10, 1000.0)
    gtt_id = broker.place_gtt(STOP)
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    errors = []

    def tick():
        try:
            barrier.wait()
            broker.on_price(SYMBOL, 972.0)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=tick) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (result,) = broker.get_gtt(gtt_id).results
    sells = [o for o in broker.orders() if o.side is Side.SELL]
    assert [o.order_id for o in sells] == [result.order_id]
    assert shares(broker) == 0


def test_a_gtt_fires_once_when_two_brokers_on_one_account_see_the_same_tick(app_db, open_db):
    clock = Clock()
    first = start_broker(open_db(app_db), clock)
    bought(first, 10, 1000.0)
    gtt_id = first.place_gtt(STOP)
    second = start_broker(open_db(app_db), clock)  # another process, its own engine and lock
    barrier = threading.Barrier(2)
    errors = []

    def tick(broker):
        try:
            barrier.wait()
            broker.on_price(SYMBOL, 972.0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=tick, args=(b,)) for b in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (result,) = first.get_gtt(gtt_id).results
    assert [o.order_id for o in second.orders() if o.side is Side.SELL] == [result.order_id]
    assert shares(first) == 0


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.pg
def test_the_paper_broker_runs_and_restarts_on_postgresql(pg_database, open_db):
    migrate.upgrade(pg_database)
    clock = Clock()
    first = start_broker(open_db(pg_database), clock)
    trade_a_little(first)
    before = books(first)
    again = start_broker(open_db(pg_database), clock)
    assert books(again) == before
    again.on_price(SYMBOL, 972.0)
    (gtt,) = again.gtts()
    assert gtt.state is GttState.TRIGGERED
    assert again.order_history(gtt.results[0].order_id)[-1].state is OrderState.FILLED
