"""The trader's controls (start, stop, pause, resume, emergency stop, reload) and what it publishes.

Every command is handled between two events on the engine thread and written to the
audit log with its outcome; a reload keeps the previous parameters when the new ones
are invalid and records every applied version (who, when, diff).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from Webapp.config.params import Params, ParamsError
from Webapp.execution import leg_events as ev
from Webapp.execution.commands import Command, CommandKind
from Webapp.execution.desk import HELD, Desk, LegKey
from Webapp.execution.leg_lifecycle import FINAL
from Webapp.execution.reconciliation import Reconciliation
from Webapp.execution.trading_view import DayPnl, LadderView, LegView, TradingState, TradingView
from Webapp.market.calendar import IST
from Webapp.states import ExitReason, LegState
from Webapp.storage import param_versions
from Webapp.strategy.limits import daily_loss_hit

ParamsLoader = Callable[[str | None], tuple[Params, str]]


class Controls:
    """Commands for one desk."""

    def __init__(
        self,
        desk: Desk,
        reconciliation: Reconciliation,
        handle: Callable[[LegKey, ev.Event], None],
        params_loader: ParamsLoader | None,
    ) -> None:
        self.desk = desk
        self.reconciliation = reconciliation
        self.handle = handle
        self.params_loader = params_loader

    def on_command(self, cmd: Command) -> None:
        desk = self.desk
        desk.changed = True
        kind = cmd.kind
        if kind is CommandKind.START:
            if desk.state in (TradingState.STOPPED, TradingState.FAILED):
                desk.starting.append(cmd)
                self.reconciliation.start()
            elif desk.state is TradingState.RECONCILING:
                desk.starting.append(cmd)
            else:
                desk.finish(cmd, False, f"already {desk.state.value}")
        elif kind is CommandKind.STOP:
            if desk.state is TradingState.EMERGENCY:
                desk.finish(cmd, False, "an emergency stop is in progress")
                return
            desk.state = TradingState.STOPPED
            desk.detail = f"stopped by {cmd.actor} at {ist(desk.now())}; GTTs stay at the broker"
            desk.finish(cmd, True, "stopped: no new orders; GTTs keep protecting open legs")
        elif kind is CommandKind.PAUSE:
            if desk.state is not TradingState.RUNNING:
                desk.finish(cmd, False, f"cannot pause while {desk.state.value}")
                return
            desk.state = TradingState.PAUSED
            desk.detail = f"entries paused by {cmd.actor} at {ist(desk.now())}"
            desk.finish(cmd, True, "entries paused; stops keep trailing")
        elif kind is CommandKind.RESUME:
            if desk.state is not TradingState.PAUSED:
                desk.finish(cmd, False, f"nothing to resume while {desk.state.value}")
                return
            desk.state, desk.detail = TradingState.RUNNING, f"resumed by {cmd.actor}"
            desk.finish(cmd, True, "entries resumed")
        elif kind is CommandKind.EMERGENCY:
            legs = self.emergency_stop(cmd.actor)
            noun = "leg" if legs == 1 else "legs"
            desk.finish(cmd, True, f"closing {legs} {noun} at market")
        elif kind is CommandKind.RELOAD:
            self._reload(cmd)

    def reconciled(self, message: str) -> None:
        desk = self.desk
        desk.state, desk.detail = TradingState.RUNNING, message
        starting, desk.starting = desk.starting, []
        for cmd in starting:
            desk.finish(cmd, True, message)

    def _reload(self, cmd: Command) -> None:
        desk = self.desk
        if self.params_loader is None:
            desk.finish(cmd, False, "parameters cannot be reloaded here")
            return
        try:
            params, text = self.params_loader(cmd.params_text)
        except (ParamsError, OSError) as exc:
            desk.finish(cmd, False, f"parameters not changed: {exc}")
            return
        version = desk.journal.write(
            param_versions.record_version, text, cmd.actor, cmd.note, now=desk.now()
        )
        number = version.version
        desk.params = params
        desk.params_version = number
        use_params = getattr(desk.broker, "use_params", None)
        if use_params is not None:  # the paper broker's fill model follows the reload
            use_params(params)
        desk.finish(cmd, True, f"parameters v{number} applied")

    # --- the emergency stop -------------------------------------------------------------------

    def emergency_stop(self, actor: str) -> int:
        """Cancel every GTT and sell every open leg at market, then stop. Needs no prices."""
        desk = self.desk
        if desk.state in (TradingState.STOPPED, TradingState.FAILED) and not desk.ladders:
            self.reconciliation.load_from_db()
        desk.state = TradingState.EMERGENCY
        desk.detail = f"emergency stop by {actor} at {ist(desk.now())}: selling every leg"
        keys = [
            (ls.symbol, position)
            for ls in desk.ladders.values()
            for position in sorted(ls.work)
            if ls.work[position].stage not in FINAL
        ]
        for key in keys:
            self.handle(key, ev.ExitDecided(ExitReason.EMERGENCY))
        self.emergency_progress()
        return len(keys)

    def emergency_progress(self) -> None:
        desk = self.desk
        if desk.state is not TradingState.EMERGENCY:
            return
        if any(ls.live_positions() for ls in desk.ladders.values()):
            return
        desk.state = TradingState.STOPPED
        desk.detail = f"emergency stop completed at {ist(desk.now())}: no open legs"
        desk.changed = True


def build_view(desk: Desk) -> TradingView:
    """The published view: state, every ladder and leg with its P&L, signals, orders, errors."""
    now = desk.now()
    ladders = []
    unrealised = 0.0
    for ls in sorted(desk.ladders.values(), key=lambda x: x.symbol):
        ltp = desk.ltp.get(ls.symbol)
        legs = []
        for leg in ls.ladder.legs:
            pnl = pnl_pct = None
            if leg.state in HELD and ltp is not None and leg.entry_price:
                pnl = round((ltp - leg.entry_price) * leg.qty, 2)
                pnl_pct = round((ltp / leg.entry_price - 1) * 100, 2)
                unrealised += pnl
            elif leg.state is LegState.CLOSED and leg.exit_price is not None:
                pnl = round((leg.exit_price - leg.entry_price) * leg.qty, 2)
                pnl_pct = round((leg.exit_price / leg.entry_price - 1) * 100, 2)
            bought = leg.state is not LegState.PENDING_ENTRY
            legs.append(
                LegView(
                    symbol=ls.symbol,
                    position=leg.position_number,
                    state=leg.state.value,
                    qty=leg.qty,
                    entry=leg.entry_price or None,
                    ltp=ltp,
                    pnl=pnl,
                    pnl_pct=pnl_pct,
                    stop=leg.stop if bought else None,
                    gtt_trigger=leg.gtt_stop,
                    target=leg.gtt_target,
                    age_s=(now - leg.entry_time).total_seconds() if bought else None,
                    exit_reason=leg.exit_reason.value if leg.exit_reason else None,
                )
            )
        ladders.append(
            LadderView(
                ls.symbol,
                ls.ladder.state.value,
                ls.ladder.opened_at,
                tuple(legs),
                round(sum(g.pnl or 0 for g in legs), 2),
            )
        )
    book = desk.book()
    day = DayPnl(
        realised=round(desk.realised_gross, 2),
        charges=round(desk.charges_today, 2),
        unrealised=round(unrealised, 2),
        net=round(desk.realised_net + unrealised, 2),
        loss_limit_hit=daily_loss_hit(book, desk.params),
    )
    return TradingView(
        state=desk.state,
        detail=desk.detail,
        entries_paused=desk.state is TradingState.PAUSED,
        broker=desk.broker.name,
        params_version=desk.params_version,
        day=day,
        ladders=tuple(ladders),
        signals=tuple(desk.signals[s] for s in sorted(desk.signals)),
        orders=tuple(desk.orders_log),
        errors=tuple(desk.errors),
        updated_at=now,
        reconciled=desk.reconciled,
    )


def ist(at: datetime) -> str:
    return at.astimezone(IST).strftime("%d %b %H:%M:%S IST")
