"""The engine process of the crash tests: trade one scenario, SIGKILL itself at a named step.

Run as `python -m tests.integration.crash_child --mode paper|live --db-url URL --step
STEP [--kite-root URL --api-key KEY --access-token TOKEN --price-url URL]`, or (as
tests/integration/test_crash_restart.py does) `child_process` forked from a forkserver.

The process builds the whole engine in one thread exactly as tests/trading_rig.py does
(paper: `make_rig`; live: the same pieces around a KiteBroker pointed at kitesim, which
runs in the parent and so outlives this process), opens P1 of INFY (P2 is set out of
reach: one leg per scenario) and then, for an exit step, runs the engine's own stop
exit (the price rises to 1002, lifting the engine's stop to 976.95, then falls to
976.5: under that stop but above the GTT's trigger, so the GTT stays put and the engine
deletes it and sells); for a trail step, 61 s later the price is 1010, and the GTT's
stop is modified up from 975.45 (paper; 975.0 live) to 984.75. The crash point is armed by
wrapping, in this process only, the trader's write-ahead step (`Trader.write`: killed
just after the step's transaction committed) or a broker method (killed just before or
just after the broker carried the call out). Reaching the end without the crash point
exits with status 3.

Live order updates arrive the way the runtime's fallback poll brings them: every order
in Kite's book is handed to `KiteBroker.ingest_order_update` after each event.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from kiteconnect import KiteConnect

from tests.helpers import FakeClock
from tests.trading_rig import DEFAULTS, T0, PaperRig, make_rig, rig_params
from Webapp.broker.base import Side
from Webapp.broker.kite import KiteBroker
from Webapp.config.params import Params
from Webapp.execution.builders import Driver, inline_engine
from Webapp.execution.clock import SimulatedClock
from Webapp.market.calendar import MarketCalendar
from Webapp.market.ltp_store import LTPStore
from Webapp.storage import migrate
from Webapp.storage.db import make_engine, make_session_factory

SYMBOL = "INFY"
QTY = 3
# The shipped parameters, with P2 out of reach (20% up): every scenario holds one leg.
PARAMS = rig_params(p2=DEFAULTS.p2.model_copy(update={"trigger_pct": 20.0}))
BUY_AT = 1000.0  # P1 is bought here
HIGH = 1002.0  # lifts the engine's stop (976.95) above the GTT's trigger; P2 needs 1002.5+
DROP = 976.5  # under the engine's stop, above the GTT's trigger (975.45 paper, 975.0 live)
FIRE = 974.0  # through the GTT's stop trigger, above its LIMIT (970.55 / 970.10): it fills
TRAIL_AT = 1010.0  # 61 s after the buy: the stop 984.75 is due at the broker (min_step 0.5%)

# Where the process kills itself. Entry steps, then exit steps (see the module docstring).
ENTRY_STEPS = (
    "entry:intent",  # add_leg_intent committed, the buy not yet at the broker
    "entry:buy_at_broker",  # place_order returned, nothing recorded of it
    "entry:fill_recorded",  # record_entry_fill committed, no GTT intent yet
    "entry:gtt_intent",  # gtt_intent committed, the GTT not yet at the broker
    "entry:gtt_at_broker",  # place_gtt returned, gtt_placed not recorded
)
EXIT_STEPS = (
    "exit:intent",  # exit_intent committed, the GTT not yet deleted
    "exit:gtt_deleted_at_broker",  # delete_gtt returned, gtt_deleted not recorded
    "exit:gtt_deleted",  # gtt_deleted committed, no sell intent yet
    "exit:sell_intent",  # sell_intent committed, the sell not yet at the broker
    "exit:sell_at_broker",  # place_order returned, its fill not recorded
    "exit:gtt_fired_while_down",  # killed with P1 open; the GTT fires before the restart
)
TRAIL_STEPS = (
    "trail:modify_intent",  # gtt_modify_intent committed, the modify not yet at the broker
    "trail:modify_at_broker",  # modify_gtt returned, gtt_modified not recorded
)
STEPS = ENTRY_STEPS + EXIT_STEPS + TRAIL_STEPS

# Step → the write-ahead function after whose commit the process dies.
AFTER_WRITE = {
    "entry:fill_recorded": "record_entry_fill",
    "entry:gtt_intent": "gtt_intent",
    "exit:intent": "exit_intent",
    "exit:gtt_deleted": "gtt_deleted",
    "exit:sell_intent": "sell_intent",
    "trail:modify_intent": "gtt_modify_intent",
}


@dataclass(frozen=True)
class KiteSimAddress:
    """Where the parent's kitesim answers: Kite's REST root, its login, its price switch."""

    root: str
    api_key: str
    access_token: str
    price_url: str  # POST {"symbol", "price"}: a trade at the exchange


@dataclass
class LiveRig(PaperRig):
    """A PaperRig around a KiteBroker: prices move kitesim first, order updates are polled."""

    address: KiteSimAddress | None = None
    kite: KiteConnect | None = field(default=None, repr=False)

    def market(self, symbol: str, ltp: float) -> None:
        """A trade at the exchange (kitesim fires GTTs and fills orders it reaches)."""
        assert self.address is not None
        body = json.dumps({"symbol": symbol, "price": ltp}).encode()
        request = urllib.request.Request(  # noqa: S310 (kitesim, on localhost)
            self.address.price_url, body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request) as reply:  # noqa: S310 (kitesim, on localhost)
            reply.read()

    def poll(self) -> None:
        """Kite's order book into the broker's update tracker (news only), then settle."""
        assert self.kite is not None
        for raw in self.kite.orders():
            self.broker.ingest_order_update(raw, source="poll")
        self.driver.settle()

    def tick(self, symbol: str, ltp: float, seconds: float = 1.0) -> None:
        self.market(symbol, ltp)
        super().tick(symbol, ltp, seconds)
        self.poll()

    def wait(self, seconds: float) -> None:
        for _ in range(int(seconds)):
            self.clock.advance(timedelta(seconds=1))
            self.driver.timer(self.clock.now())
            self.poll()

    def buy(self, symbol: str, qty: int, price: float) -> None:
        super().buy(symbol, qty, price)
        self.poll()


def make_live_rig(
    db_url: str,
    address: KiteSimAddress,
    params: Params = PARAMS,
    *,
    start: datetime = T0,
) -> LiveRig:
    """make_rig's engine with the runtime's live settings: KiteBroker, account "live", no
    paper exchange, GTTs listed every 30 s."""
    migrate.upgrade(db_url)
    sessions = make_session_factory(make_engine(db_url))
    clock = SimulatedClock(start)
    store = LTPStore()
    calendar = MarketCalendar.nse()
    limits_clock = FakeClock()  # rate limits and backoff in simulated seconds: no real waits
    broker = KiteBroker(
        address.api_key,
        address.access_token,
        root=address.root,
        clock=limits_clock,
        sleep=limits_clock.sleep,
        timeout=5.0,
    )
    engine = inline_engine(
        Driver.LIVE,
        broker=broker,
        sessions=sessions,
        params=params,
        clock=clock,
        store=store,
        universe=[SYMBOL],
        account="live",
        calendar=calendar,
        market_time=True,
    )
    trader, driver, gateway = engine.trader, engine.driver, engine.gateway
    kite = KiteConnect(address.api_key, root=address.root, timeout=5)
    kite.set_access_token(address.access_token)
    return LiveRig(
        trader, driver, gateway, broker, clock, store, sessions, db_url, address=address, kite=kite
    )


def make_any_rig(
    mode: str, db_url: str, address: KiteSimAddress | None, *, start: datetime
) -> PaperRig:
    if mode == "paper":
        return make_rig(Path("unused"), PARAMS, db_url=db_url, start=start, universe=(SYMBOL,))
    assert address is not None, "live mode needs kitesim's address"
    return make_live_rig(db_url, address, start=start)


# --- the crash ------------------------------------------------------------------------------


def die(step: str) -> None:
    print(f"crash_child: SIGKILL at {step}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def arm(rig: PaperRig, step: str) -> None:
    """Wrap, in this process only, the trader's write or a broker method to die at `step`."""
    trader, broker = rig.trader, rig.broker
    if step in AFTER_WRITE:
        # Die once the step is committed (with the rest of its engine event's batch), before
        # the broker call it announces: the first call the engine releases after it.
        journal, name = trader.journal, AFTER_WRITE[step]
        write, submit = journal.write, trader._submit
        written = []

        def write_and_note(fn, *args, **kwargs):
            result = write(fn, *args, **kwargs)
            if fn.__name__ == name:
                written.append(step)
            return result

        def submit_or_die(request, urgent=False):
            if written:
                die(step)
            submit(request, urgent)

        journal.write = write_and_note
        trader._submit = submit_or_die
    elif step in ("entry:intent", "entry:buy_at_broker", "exit:sell_at_broker"):
        place_order, side = broker.place_order, Side.SELL if step.startswith("exit") else Side.BUY

        def place_order_and_die(request):
            if request.side is side and step == "entry:intent":
                die(step)  # the intent is committed: trader.buy wrote it before sending
            order = place_order(request)
            if request.side is side:
                die(step)
            return order

        broker.place_order = place_order_and_die
    elif step == "entry:gtt_at_broker":
        place_gtt = broker.place_gtt

        def place_gtt_and_die(request):
            gtt_id = place_gtt(request)
            die(step)
            return gtt_id

        broker.place_gtt = place_gtt_and_die
    elif step == "exit:gtt_deleted_at_broker":
        delete_gtt = broker.delete_gtt

        def delete_gtt_and_die(gtt_id):
            state = delete_gtt(gtt_id)
            die(step)
            return state

        broker.delete_gtt = delete_gtt_and_die
    elif step == "trail:modify_at_broker":
        modify_gtt = broker.modify_gtt

        def modify_gtt_and_die(gtt_id, request):
            modify_gtt(gtt_id, request)
            die(step)

        broker.modify_gtt = modify_gtt_and_die
    elif step != "exit:gtt_fired_while_down":
        raise ValueError(f"unknown crash step {step!r}")


def scenario(rig: PaperRig, step: str) -> None:
    """Start (reconcile), open P1; then the engine's own stop exit, or a trailed GTT."""
    rig.start()
    rig.tick(SYMBOL, BUY_AT)
    rig.buy(SYMBOL, QTY, BUY_AT)
    if step == "exit:gtt_fired_while_down":
        die(step)  # P1 open and protected; the parent moves the price through the GTT
    if step in EXIT_STEPS:
        rig.tick(SYMBOL, HIGH)
        rig.tick(SYMBOL, DROP)
    if step in TRAIL_STEPS:
        rig.tick(SYMBOL, TRAIL_AT, seconds=61)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.crash_child")
    parser.add_argument("--mode", choices=("paper", "live"), required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--step", choices=STEPS, required=True)
    parser.add_argument("--kite-root")
    parser.add_argument("--api-key")
    parser.add_argument("--access-token")
    parser.add_argument("--price-url")
    return parser.parse_args(argv)


def child_process(argv: list[str], log_path: str) -> None:
    """A multiprocessing target: `main` with stdout and stderr in `log_path` (the tests fork
    it from a forkserver that imported this module once, to spare each child the imports)."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.exit(main(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    address = None
    if args.mode == "live":
        address = KiteSimAddress(args.kite_root, args.api_key, args.access_token, args.price_url)
    rig = make_any_rig(args.mode, args.db_url, address, start=T0)
    arm(rig, args.step)
    scenario(rig, args.step)
    print(f"crash_child: {args.step} was never reached", file=sys.stderr, flush=True)
    return 3


if __name__ == "__main__":
    sys.exit(main())
