"""The trader's controls (start, stop, pause, resume, emergency stop, reload) and what it publishes.

Every command is handled between two events on the engine thread and written to the
audit log with its outcome; a reload keeps the previous parameters when the new ones
are invalid and records every applied version (who, when, diff). A mixin of Trader.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from Webapp.config.params import ParamsError
from Webapp.execution.commands import Command, CommandKind
from Webapp.execution.slots import HELD
from Webapp.execution.trading_view import (
    DayPnl,
    LadderView,
    LegView,
    TradingState,
    TradingView,
)
from Webapp.market.calendar import IST
from Webapp.states import ExitReason, LegState
from Webapp.storage import audit, param_versions
from Webapp.storage.db import transaction
from Webapp.strategy.limits import daily_loss_hit

if TYPE_CHECKING:
    from Webapp.execution.trader import Trader


class Controls:
    """Commands and the published view for Trader."""

    def on_command(self: Trader, cmd: Command) -> None:
        self.changed = True
        kind = cmd.kind
        if kind is CommandKind.START:
            if self.state in (TradingState.STOPPED, TradingState.FAILED):
                self._starting.append(cmd)
                self.start_reconcile()
            elif self.state is TradingState.RECONCILING:
                self._starting.append(cmd)
            else:
                self.finish(cmd, False, f"already {self.state.value}")
        elif kind is CommandKind.STOP:
            if self.state is TradingState.EMERGENCY:
                self.finish(cmd, False, "an emergency stop is in progress")
                return
            self.state = TradingState.STOPPED
            self.detail = f"stopped by {cmd.actor} at {_ist(self.now())}; GTTs stay at the broker"
            self.finish(cmd, True, "stopped: no new orders; GTTs keep protecting open legs")
        elif kind is CommandKind.PAUSE:
            if self.state is not TradingState.RUNNING:
                self.finish(cmd, False, f"cannot pause while {self.state.value}")
                return
            self.state = TradingState.PAUSED
            self.detail = f"entries paused by {cmd.actor} at {_ist(self.now())}"
            self.finish(cmd, True, "entries paused; stops keep trailing")
        elif kind is CommandKind.RESUME:
            if self.state is not TradingState.PAUSED:
                self.finish(cmd, False, f"nothing to resume while {self.state.value}")
                return
            self.state, self.detail = TradingState.RUNNING, f"resumed by {cmd.actor}"
            self.finish(cmd, True, "entries resumed")
        elif kind is CommandKind.EMERGENCY:
            legs = self.emergency_stop(cmd.actor)
            noun = "leg" if legs == 1 else "legs"
            self.finish(cmd, True, f"closing {legs} {noun} at market")
        elif kind is CommandKind.RELOAD:
            self._reload(cmd)

    def finish(self: Trader, cmd: Command, ok: bool, message: str) -> None:
        with transaction(self.sessions) as session:
            audit.record(
                session,
                cmd.actor,
                f"engine_{cmd.kind.value}",
                ok=ok,
                message=message,
                account=self.account,
            )
        cmd.finish(ok, message)
        self.changed = True

    def reconciled(self: Trader, message: str) -> None:
        self.state, self.detail = TradingState.RUNNING, message
        self._next_scan = None
        starting, self._starting = self._starting, []
        for cmd in starting:
            self.finish(cmd, True, message)

    def fail(self: Trader, reason: str) -> None:
        """Fail closed: no new orders until an operator looks and presses Start."""
        self.state, self.detail = TradingState.FAILED, reason
        self._reconcile_parts = None  # a reconciliation under way must not resume trading
        self.error(reason)
        starting, self._starting = self._starting, []
        for cmd in starting:
            self.finish(cmd, False, reason)

    def _reload(self: Trader, cmd: Command) -> None:
        if self._params_loader is None:
            self.finish(cmd, False, "parameters cannot be reloaded here")
            return
        try:
            params, text = self._params_loader(cmd.params_text)
        except (ParamsError, OSError) as exc:
            self.finish(cmd, False, f"parameters not changed: {exc}")
            return
        with transaction(self.sessions) as session:
            version = param_versions.record_version(
                session, text, cmd.actor, cmd.note, now=self.now()
            )
            number = version.version
        self.params = params
        self.params_version = number
        use_params = getattr(self.broker, "use_params", None)
        if use_params is not None:  # the paper broker's fill model follows the reload
            use_params(params)
        self.finish(cmd, True, f"parameters v{number} applied")

    # --- the emergency stop -------------------------------------------------------------------

    def emergency_stop(self: Trader, actor: str) -> int:
        """Cancel every GTT and sell every open leg at market, then stop. Needs no prices."""
        if self.state in (TradingState.STOPPED, TradingState.FAILED) and not self.ladders:
            self.load_from_db()
        self.state = TradingState.EMERGENCY
        self.detail = f"emergency stop by {actor} at {_ist(self.now())}: selling every leg"
        legs = 0
        for ls in list(self.ladders.values()):
            for position in sorted(ls.legs):
                if position in ls.legs and ls.leg(position).state is not LegState.CLOSED:
                    legs += 1
                    self.exit_leg(ls, position, ExitReason.EMERGENCY, self.ltp.get(ls.symbol))
        self.emergency_progress()
        return legs

    def emergency_progress(self: Trader) -> None:
        if self.state is not TradingState.EMERGENCY:
            return
        if any(ls.live_positions() for ls in self.ladders.values()):
            return
        self.state = TradingState.STOPPED
        self.detail = f"emergency stop completed at {_ist(self.now())}: no open legs"
        self.changed = True

    # --- the published view -------------------------------------------------------------------

    def build_view(self: Trader) -> TradingView:
        now = self.now()
        ladders = []
        unrealised = 0.0
        for ls in sorted(self.ladders.values(), key=lambda x: x.symbol):
            ltp = self.ltp.get(ls.symbol)
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
        book = self.book()
        day = DayPnl(
            realised=round(self.realised_gross, 2),
            charges=round(self.charges_today, 2),
            unrealised=round(unrealised, 2),
            net=round(self.realised_net + unrealised, 2),
            loss_limit_hit=daily_loss_hit(book, self.params),
        )
        return TradingView(
            state=self.state,
            detail=self.detail,
            entries_paused=self.state is TradingState.PAUSED,
            broker=self.broker.name,
            params_version=self.params_version,
            day=day,
            ladders=tuple(ladders),
            signals=tuple(self.signals[s] for s in sorted(self.signals)),
            orders=tuple(self.orders_log),
            errors=tuple(self.errors),
            updated_at=now,
        )


def _ist(at: datetime) -> str:
    return at.astimezone(IST).strftime("%d %b %H:%M:%S IST")
