"""Scenario helpers for the ladder rules: default params, a tiny engine that replays prices."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from Webapp.config.params import Params, load_params
from Webapp.states import ExitReason, LadderState, LegState
from Webapp.strategy.actions import Action, Buy, Exit, ModifyGtt, RaiseStop
from Webapp.strategy.ladder import (
    Ladder,
    gtt_placed,
    on_fill,
    on_price,
    stop_raised,
)
from Webapp.strategy.limits import Book, leg_quantity

PARAM_YAML = Path(__file__).resolve().parents[2] / "support_files" / "param.yaml"
DEFAULTS = load_params(PARAM_YAML)
# A Tuesday, 10:00 IST: inside the entry window on a trading day.
T0 = datetime(2025, 1, 7, 4, 30, tzinfo=UTC)
SYMBOL = "INFY"


def params(**changes: Any) -> Params:
    """The shipped params with `changes`; a dotted key ("gtt.min_step_pct") changes a nested one.

    Params is a frozen pydantic model, so each level is copied with model_copy(update=...)
    (which does not re-validate: a test may set a value the file check would refuse).
    """
    result = DEFAULTS
    for key, value in changes.items():
        result = _updated(result, key.split("."), value)
    return result


def _updated(model: Any, path: list[str], value: Any) -> Any:
    head, *rest = path
    if rest:
        value = _updated(getattr(model, head), rest, value)
    return model.model_copy(update={head: value})


Price = float | tuple[float, float]  # a price 1 s after the last, or (seconds from T0, price)


@dataclass
class Scenario:
    """Prices in, the exact decisions out. The first price opens P1 as the scan would.

    RaiseStop decisions are left out of the comparison unless `trace_stops` is set, so
    that a scenario lists only the broker-facing decisions it is about.
    """

    name: str
    prices: list[Price]
    expect: list[Action]
    params: Params = DEFAULTS
    book: Book = field(default_factory=Book)  # the rest of the account, without this ladder
    trace_stops: bool = False


@dataclass
class Replay:
    """A tiny engine: fills every buy at its decision price, confirms every GTT at once,
    and plays the broker's step 1 (a GTT whose trigger the price crosses fires)."""

    params: Params
    book: Book = field(default_factory=Book)
    symbol: str = SYMBOL
    ladder: Ladder | None = None
    log: list[Action] = field(default_factory=list)
    gtt_fired: list[tuple[int, ExitReason]] = field(default_factory=list)

    def run(self, prices: list[Price]) -> list[Action]:
        seconds = -1.0
        for price in prices:
            seconds, ltp = price if isinstance(price, tuple) else (seconds + 1, price)
            self.price(ltp, T0 + timedelta(seconds=seconds))
        return self.log

    def price(self, ltp: float, now: datetime) -> list[Action]:
        if self.ladder is None:
            qty = leg_quantity(ltp, self.params)
            self.ladder = Ladder(self.symbol, opened_at=now)
            return self._apply([Buy(self.symbol, 1, qty, ltp)], ltp, now)
        self._broker_side(ltp, now)
        return self._apply(on_price(self.ladder, ltp, now, self.params, self.account()), ltp, now)

    def account(self) -> Book:
        """The rest of the account plus this ladder's held legs."""
        held = (
            [g for g in self.ladder.legs if g.state is not LegState.CLOSED] if self.ladder else []
        )
        return replace(
            self.book,
            open_legs=self.book.open_legs + len(held),
            capital_in_use=self.book.capital_in_use + sum(g.cost for g in held),
        )

    def _broker_side(self, ltp: float, now: datetime) -> None:
        for leg in self.ladder.legs:
            if leg.state is not LegState.OPEN:
                continue
            if leg.gtt_stop is not None and ltp <= leg.gtt_stop:
                self._close(leg.position_number, ltp, now, ExitReason.STOP_GTT)
                self.gtt_fired.append((leg.position_number, ExitReason.STOP_GTT))
            elif leg.gtt_target is not None and ltp >= leg.gtt_target:
                self._close(leg.position_number, ltp, now, ExitReason.TARGET)
                self.gtt_fired.append((leg.position_number, ExitReason.TARGET))

    def _apply(self, actions: list[Action], ltp: float, now: datetime) -> list[Action]:
        done: list[Action] = []
        for action in actions:
            done.append(action)
            if isinstance(action, Buy):
                leg, gtt = on_fill(
                    self.symbol, action.leg, action.qty, action.price, now, self.params
                )
                self.ladder.legs.append(gtt_placed(leg, gtt, now))
                done.append(gtt)
            elif isinstance(action, RaiseStop):
                self._replace(action.leg, lambda g, a=action: stop_raised(g, a))
            elif isinstance(action, ModifyGtt):
                self._replace(action.leg, lambda g, a=action: gtt_placed(g, a, now))
            elif isinstance(action, Exit):
                self._close(action.leg, ltp, now, action.reason)
        self.log.extend(done)
        return done

    def _replace(self, position_number: int, change: Any) -> None:
        legs = self.ladder.legs
        index = next(i for i, g in enumerate(legs) if g.position_number == position_number)
        legs[index] = change(legs[index])

    def _close(self, position_number: int, ltp: float, now: datetime, reason: ExitReason) -> None:
        self._replace(
            position_number,
            lambda g: replace(
                g, state=LegState.CLOSED, exit_price=ltp, exit_time=now, exit_reason=reason
            ),
        )
        ladder = self.ladder
        if reason in (ExitReason.STOP_ENGINE, ExitReason.STOP_GTT):
            ladder.stopped_out = True
            ladder.state = LadderState.STOPPED_OUT
        if all(g.state is LegState.CLOSED for g in ladder.legs):
            ladder.state = LadderState.CLOSED
            ladder.closed_at = now


def replay(sc: Scenario) -> list[Action]:
    """The decisions a scenario's prices produce, RaiseStop left out unless traced."""
    actions = Replay(sc.params, sc.book).run(sc.prices)
    if sc.trace_stops:
        return actions
    return [a for a in actions if not isinstance(a, RaiseStop)]
