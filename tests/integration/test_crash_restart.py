"""SIGKILL the engine at each step of an entry, an exit and a GTT trail; restart; all agree.

Each test runs tests/integration/crash_child.py in a child process that trades P1 of
INFY and kills itself (SIGKILL) at one write-ahead step; `check_crash_state` proves it
died exactly there. The exchange outlives it: in paper mode the paper account in the
shared app DB, in live mode kitesim in this process. Some cases then move the price
through the GTT's stop at the exchange while no engine runs ("+gtt_fired"). Then the
engine restarts here on the same DB and exchange, START must reconcile to RUNNING, one
price arrives, and the books must agree:
- no order of ours twice at the broker (one per tag, one buy, at most one sell filled);
- every bought leg still held is OPEN with exactly one ACTIVE GTT at the broker, whose
  triggers the app DB knows, and whose stop is never lower than before the crash;
- no lost fill: the broker's buy is the leg's entry, its sell the leg's exit with P&L;
- the broker holds exactly the shares the open legs hold.
After 35 more seconds (exit timeouts, retries) no leg is left half-way, the books still
agree, and the leg ends as the case implies: cancelled (the buy never left), open, or
closed.
"""

from __future__ import annotations

import multiprocessing
import shutil
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.integration.crash_child import (
    BUY_AT,
    DROP,
    ENTRY_STEPS,
    EXIT_STEPS,
    FIRE,
    PARAMS,
    SYMBOL,
    TRAIL_STEPS,
    KiteSimAddress,
    LiveRig,
    child_process,
    make_any_rig,
)
from tests.integration.kitesim_prices import address_of, priced_kitesim
from tests.kitesim.rest import KiteRestSim
from tests.trading_rig import T0, PaperRig
from Webapp.broker.base import GttState, OrderState, Side, shares_held
from Webapp.broker.paper import PaperBroker
from Webapp.execution.commands import CommandKind
from Webapp.execution.trading_view import TradingState
from Webapp.states import ExitReason, GttIntentState, LegState
from Webapp.storage import migrate
from Webapp.storage.db import make_engine, make_session_factory
from Webapp.storage.trading_models import Trade

# Only a guard against a hung child: it kills itself within a second or two of starting.
HANG_GUARD_S = 120
RESTART_AT = T0 + timedelta(minutes=5)  # same session day, after everything the child did
SETTLE_S = 35  # > exit_timeout_s (30) and the sell retry (5 s)
TRAIL_AGAIN = 1007.0  # the restarted engine's stop 981.83 is due over a 975.45 trigger


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory) -> Path:
    """An empty app DB at the current schema, copied for each test (migrating takes ~1 s)."""
    path = tmp_path_factory.mktemp("crash") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def app_db(migrated_db, tmp_path) -> str:
    """The app DB the child and the restarted engine share (a file: it outlives the child)."""
    path = tmp_path / "app.db"
    shutil.copyfile(migrated_db, path)
    return f"sqlite:///{path}"


# --- the exchange that outlives the engine ------------------------------------------------


@pytest.fixture
def kite() -> Iterator[KiteRestSim]:
    """kitesim's REST exchange with a switch the child moves prices with (a trade at a price)."""
    with priced_kitesim() as sim:
        yield sim


def address(sim: KiteRestSim) -> KiteSimAddress:
    return address_of(sim)


@pytest.fixture(scope="module")
def processes():
    """Children forked from a forkserver that imported crash_child (and the app) once:
    each is still a process of its own, killed for real, but starts in milliseconds."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.integration.crash_child"])
    return context


def run_child(
    processes, mode: str, db_url: str, step: str, sim: KiteRestSim | None, log: Path
) -> None:
    """The engine process, dead by SIGKILL at `step`."""
    argv = ["--mode", mode, "--db-url", db_url, "--step", step]
    if sim is not None:
        a = address(sim)
        argv += ["--kite-root", a.root, "--api-key", a.api_key]
        argv += ["--access-token", a.access_token, "--price-url", a.price_url]
    child = processes.Process(target=child_process, args=(argv, str(log)), name=f"crash {step}")
    child.start()
    child.join(HANG_GUARD_S)
    if child.exitcode is None:
        child.kill()
        child.join()
    output = log.read_text() if log.exists() else ""
    assert child.exitcode == -signal.SIGKILL, (
        f"the child was not killed at {step} (exit code {child.exitcode}):\n{output}"
    )
    assert f"SIGKILL at {step}" in output, output


def paper_exchange(sessions) -> PaperBroker:
    """The paper account as a second broker on the same DB sees it (the engine is down)."""
    return PaperBroker(
        sessions,
        PARAMS,
        clock=lambda: RESTART_AT - timedelta(minutes=1),
        starting_cash=1_000_000,
        account="paper",
    )


@contextmanager
def app_sessions(db_url: str) -> Iterator:
    engine = make_engine(db_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def fire_gtt_while_down(db_url: str, sim: KiteRestSim | None) -> None:
    """The price crosses P1's stop trigger at the exchange while no engine runs."""
    if sim is not None:
        sim.set_price(SYMBOL, FIRE)
        return
    with app_sessions(db_url) as sessions:
        paper_exchange(sessions).on_price(SYMBOL, FIRE)


# What the child left, per step: the leg's state, its orders' states by side and its GTT
# rows' states in the app DB; at the exchange: buys, sells, active GTTs. This proves each
# child died exactly where its step says.
BUYING, BOUGHT = {"BUY": "pending"}, {"BUY": "filled"}
SELLING = {"BUY": "filled", "SELL": "pending"}
AT_CRASH = {
    "entry:intent": ("pending_entry", BUYING, [], 0, 0, 0),
    "entry:buy_at_broker": ("pending_entry", BUYING, [], 1, 0, 0),
    # One engine event commits its decisions together (one fsync): the fill and the GTT
    # intent it leads to are on record together, before the GTT is placed.
    "entry:fill_recorded": ("protecting", BOUGHT, ["pending"], 1, 0, 0),
    "entry:gtt_intent": ("protecting", BOUGHT, ["pending"], 1, 0, 0),
    "entry:gtt_at_broker": ("protecting", BOUGHT, ["pending"], 1, 0, 1),
    "exit:intent": ("pending_exit", BOUGHT, ["deleting"], 1, 0, 1),
    "exit:gtt_deleted_at_broker": ("pending_exit", BOUGHT, ["deleting"], 1, 0, 0),
    # Likewise the confirmed delete and the sell intent it leads to.
    "exit:gtt_deleted": ("pending_exit", SELLING, ["deleted"], 1, 0, 0),
    "exit:sell_intent": ("pending_exit", SELLING, ["deleted"], 1, 0, 0),
    "exit:sell_at_broker": ("pending_exit", SELLING, ["deleted"], 1, 1, 0),
    "exit:gtt_fired_while_down": ("open", BOUGHT, ["active"], 1, 0, 1),
    "trail:modify_intent": ("open", BOUGHT, ["modifying"], 1, 0, 1),
    "trail:modify_at_broker": ("open", BOUGHT, ["modifying"], 1, 0, 1),
}


def check_crash_state(db_url: str, step: str, sim: KiteRestSim | None) -> float | None:
    """The app DB and the exchange as `AT_CRASH` says; returns the active GTT's stop."""
    with app_sessions(db_url) as sessions:
        with sessions() as s:
            (leg,) = s.scalars(select(Trade).where(Trade.symbol == SYMBOL)).all()
            app = (leg.status, {o.side: o.state for o in leg.orders}, [g.state for g in leg.gtts])
        if sim is None:
            paper = paper_exchange(sessions)
            sides = [o.side.value for o in paper.orders()]
            active = [g for g in paper.gtts() if g.state is GttState.ACTIVE]
            stops = [g.triggers[0] for g in active]
    if sim is not None:
        sides = [o["transaction_type"] for o in sim.order_book]
        active = [g for g in sim.gtt_book if g["status"] == "active"]
        stops = [g["condition"]["trigger_values"][0] for g in active]
    exchange = (sides.count("BUY"), sides.count("SELL"), len(active))
    assert (*app, *exchange) == AT_CRASH[step]
    return stops[0] if stops else None


# --- the books ------------------------------------------------------------------------------


HELD_STATES = {s.value for s in (LegState.PROTECTING, LegState.OPEN, LegState.PENDING_EXIT)}


def broker_shares(rig: PaperRig) -> int:
    """The INFY shares the account holds, read the same way from Kite and from paper:
    holdings of earlier days less what was sold of them today, plus today's buys."""
    return shares_held(rig.broker.holdings(), rig.broker.positions()).get(SYMBOL, 0)


def check_protected(rig: PaperRig, stop_floor: float | None) -> None:
    """Every bought leg still held is OPEN with exactly one ACTIVE GTT of its size at the
    broker, with the triggers its row records and a stop not under `stop_floor` (the
    GTT's stop before the crash); the broker holds no other active GTT of the symbol."""
    legs = rig.rows(SYMBOL)
    assert not [g for g in legs if g.status == LegState.PROTECTING.value], "a leg without a GTT"
    open_legs = [g for g in legs if g.status == LegState.OPEN.value]
    active = [g for g in rig.broker.gtts() if g.symbol == SYMBOL and g.state is GttState.ACTIVE]
    assert len(active) == len(open_legs), (active, [(g.trade_id, g.status) for g in legs])
    by_id = {g.gtt_id: g for g in active}
    for leg in open_legs:
        rows = [r for r in rig.gtts(SYMBOL) if r.trade_id == leg.trade_id]
        live = [r for r in rows if r.state == GttIntentState.ACTIVE.value]
        assert len(live) == 1, [(r.id, r.state, r.broker_gtt_id) for r in rows]
        gtt = by_id.get(live[0].broker_gtt_id)
        assert gtt is not None, f"P{leg.position_number}'s GTT {live[0].broker_gtt_id} not active"
        assert gtt.quantity == leg.qty
        assert list(gtt.triggers) == pytest.approx(live[0].triggers), "the DB's triggers"
        if stop_floor is not None:
            assert gtt.triggers[0] >= stop_floor, "the GTT's stop moved down at the broker"


def check_books(rig: PaperRig, mode: str) -> None:
    """No duplicate order, no lost fill, shares agree (see the module docstring)."""
    orders = [o for o in rig.broker.orders() if o.symbol == SYMBOL]
    legs = {g.trade_id: g for g in rig.rows(SYMBOL)}
    ours = {o.tag: o for o in rig.orders(SYMBOL)}
    tags = Counter(o.tag for o in orders if o.tag)
    assert all(n == 1 for n in tags.values()), f"an order placed twice: {tags}"
    buys = [o for o in orders if o.side is Side.BUY]
    assert len(buys) <= 1, f"P1 bought {len(buys)} times"
    sold = [o for o in orders if o.side is Side.SELL and o.filled_quantity > 0]
    assert len(sold) <= 1, f"P1 sold {len(sold)} times"
    for buy in buys:
        assert buy.tag in ours, f"buy {buy.order_id} ({buy.tag}) unknown to the app DB"
        leg = legs[ours[buy.tag].trade_id]
        if buy.filled_quantity:
            assert leg.status != LegState.CANCELLED.value, "a filled buy's leg was cancelled"
            assert (leg.qty, leg.entry_price) == (buy.filled_quantity, buy.average_price)
        else:
            assert buy.state is not OrderState.OPEN
    for sell in sold:
        closed = [g for g in legs.values() if g.status == LegState.CLOSED.value]
        assert len(closed) == 1, f"sell {sell.order_id} filled but no leg closed"
        (leg,) = closed
        assert (leg.qty, leg.exit_price) == (sell.filled_quantity, sell.average_price)
        assert leg.pnl == round((leg.exit_price - leg.entry_price) * leg.qty, 2)
        assert leg.charges is not None and leg.charges > 0
        assert leg.pnl_net == round(leg.pnl - leg.charges, 2)
    held = sum(g.qty for g in legs.values() if g.status in HELD_STATES)
    assert broker_shares(rig) == held, "shares at the broker and in the open legs differ"


def restart(mode: str, db_url: str, sim: KiteRestSim | None) -> PaperRig:
    """A new engine on the same DB and exchange; START must reconcile to RUNNING."""
    rig = make_any_rig(mode, db_url, None if sim is None else address(sim), start=RESTART_AT)
    cmd = rig.command(CommandKind.START, "system")
    if isinstance(rig, LiveRig):
        rig.poll()
    result, state = cmd.wait(0), rig.trader.state
    assert state is TradingState.RUNNING, f"START ended {state.value}: {rig.trader.detail}"
    assert result is not None and result.ok, result
    return rig


def expected_end(case: str) -> tuple[str, str | None]:
    """The leg's final state and exit reason."""
    step = case.split("+")[0]
    if step == "entry:intent":
        return LegState.CANCELLED.value, None  # the buy never left: closed as never sent
    if fired(case):
        return LegState.CLOSED.value, ExitReason.STOP_GTT.value
    if step in EXIT_STEPS:
        return LegState.CLOSED.value, ExitReason.STOP_ENGINE.value
    return LegState.OPEN.value, None


def fired(case: str) -> bool:
    """The GTT fires at the exchange while no engine runs."""
    return case.endswith("+gtt_fired") or case == "exit:gtt_fired_while_down"


def price_after(case: str) -> float:
    """The exchange's price when the engine restarts (a trail case: a little lower, so
    that the restarted engine's own stop is due to move the GTT again)."""
    step = case.split("+")[0]
    if fired(case):
        return FIRE
    if step in TRAIL_STEPS:
        return TRAIL_AGAIN
    return DROP if step in EXIT_STEPS else BUY_AT


def crash_and_restart(
    processes, mode: str, db_url: str, case: str, sim: KiteRestSim | None, log: Path
) -> None:
    step = case.split("+")[0]
    run_child(processes, mode, db_url, step, sim, log)
    stop_floor = check_crash_state(db_url, step, sim)
    if fired(case):
        fire_gtt_while_down(db_url, sim)
        stop_floor = None
    rig = restart(mode, db_url, sim)
    check_books(rig, mode)
    rig.tick(SYMBOL, price_after(case))  # the first price places any GTT still missing
    check_protected(rig, stop_floor)
    check_books(rig, mode)
    rig.wait(SETTLE_S)
    assert rig.trader.state is TradingState.RUNNING, rig.trader.detail
    (leg,) = rig.rows(SYMBOL)
    end = (leg.status, leg.exit_reason)
    assert end == expected_end(case), (end, [e.message for e in rig.trader.errors])
    check_protected(rig, stop_floor)
    check_books(rig, mode)


# Every step, and two where the GTT also fires while the engine is down: one placed at
# the broker but not yet recorded, one the exit was about to delete.
CASES = (
    *ENTRY_STEPS,
    *EXIT_STEPS,
    *TRAIL_STEPS,
    "entry:gtt_at_broker+gtt_fired",
    "exit:intent+gtt_fired",
)


@pytest.mark.parametrize("case", CASES)
def test_paper_engine_killed_at_a_step_restarts_consistent(case, app_db, processes, tmp_path):
    crash_and_restart(processes, "paper", app_db, case, None, tmp_path / "child.log")


@pytest.mark.parametrize("case", CASES)
def test_live_engine_killed_at_a_step_restarts_consistent_with_kitesim(
    case, app_db, kite, processes, tmp_path
):
    crash_and_restart(processes, "live", app_db, case, kite, tmp_path / "child.log")


@pytest.mark.pg
@pytest.mark.parametrize("case", ["entry:buy_at_broker", "exit:sell_intent"])
def test_paper_engine_killed_restarts_consistent_on_postgresql(
    case, pg_database, processes, tmp_path
):
    crash_and_restart(processes, "paper", pg_database, case, None, tmp_path / "child.log")
