"""The journal: where the engine writes each step of a leg before (or after) the broker call.

`Journal` is the port the execution layer writes through; it names the steps of a leg's
life, not tables. `StoreJournal` keeps them in the app database through the storage
modules (ladders, legs, orders, gtts), one committed transaction per step, so a crash
between two steps is recovered from the last one: the durable, write-ahead journal of
live and paper trading (SQLite with synchronous=FULL, or PostgreSQL). A backtest uses the
same journal on an in-memory database (`memory_journal`): the write-ahead rules stay in
one place, and a backtest never waits on a disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from Webapp.states import ExitReason, OrderIntentState
from Webapp.storage import gtts, ladders, legs, orders
from Webapp.storage.db import memory_session_factory, transaction
from Webapp.storage.trading_models import Trade
from Webapp.strategy.pnl import LegPnl


class Journal(Protocol):
    """The write-ahead steps of the engine, each committed when the method returns."""

    sessions: sessionmaker[Session]

    def batch(self) -> AbstractContextManager[None]: ...

    def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def leg_intent(
        self,
        ladder_id: int | None,
        account: str,
        symbol: str,
        position: int,
        qty: int,
        sl_pct: float,
        target_pct: float | None,
        tag: str,
        now: datetime,
    ) -> Trade: ...

    def order_sent(self, tag: str, order_id: str, at: datetime) -> None: ...

    def entry_filled(
        self,
        trade_id: int,
        price: float,
        qty: int,
        at: datetime,
        *,
        stop: float,
        target: float | None,
        order_id: str | None,
    ) -> None: ...

    def entry_cancelled(
        self, trade_id: int, state: OrderIntentState, message: str, at: datetime
    ) -> None: ...

    def gtt_intent(
        self,
        trade_id: int,
        gtt_type: str,
        triggers: Sequence[float],
        limit_prices: Sequence[float],
        at: datetime,
    ) -> int: ...

    def gtt_placed(self, row_id: int, gtt_id: int, at: datetime) -> None: ...

    def gtt_place_failed(self, row_id: int, message: str, at: datetime) -> None: ...

    def gtt_modify_intent(
        self, row_id: int, triggers: Sequence[float], limit_prices: Sequence[float], at: datetime
    ) -> None: ...

    def gtt_modified(self, row_id: int, at: datetime) -> None: ...

    def gtt_modify_failed(self, row_id: int, message: str, at: datetime) -> None: ...

    def gtt_vanished(self, row_id: int, message: str, at: datetime) -> None: ...

    def gtt_deleted(self, row_id: int, at: datetime) -> None: ...

    def gtt_triggered(self, row_id: int, trigger_index: int, at: datetime) -> None: ...

    def gtt_order_failed(self, row_id: int, message: str, at: datetime) -> None: ...

    def exit_intent(self, trade_id: int, reason: ExitReason, at: datetime) -> None: ...

    def sell_intent(
        self,
        trade_id: int,
        tag: str,
        *,
        order_type: str,
        price: float | None,
        purpose: str,
        at: datetime,
    ) -> None: ...

    def sell_ended(self, tag: str, state: OrderIntentState, message: str, at: datetime) -> None: ...

    def exit_filled(
        self,
        trade_id: int,
        price: float,
        qty: int,
        at: datetime,
        pnl: LegPnl,
        *,
        tag: str | None,
        order_id: str | None,
    ) -> None: ...

    def order_modified(self, tag: str, order_type: str, at: datetime) -> None: ...

    def stops_raised(self, stops: Sequence[tuple[int, float, float]], at: datetime) -> None: ...


class StoreJournal:
    """The journal in the app database: a step is committed on its own, or with the other
    steps of the same engine event inside `batch()` (one transaction, one fsync)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._batching = False
        self._session: Session | None = None  # the open batch's, from its first step on

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every step written inside is committed together when the block ends (nothing of
        it when the block raises). The engine holds the broker calls of the batch until
        then: each call still follows the write that announces it. A refused step raises
        IllegalTransition having written nothing (the storage modules check first), so the
        batch goes on without it. A batch that writes nothing opens no transaction."""
        if self._batching:
            yield
            return
        self._batching = True
        try:
            yield
            if self._session is not None:
                self._session.commit()
        finally:
            session, self._session, self._batching = self._session, None, False
            if session is not None:
                session.close()  # rolls back what was not committed

    def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One step: in the open batch, else in its own committed transaction."""
        if self._batching:
            if self._session is None:
                self._session = self.sessions()
            return fn(self._session, *args, **kwargs)
        with transaction(self.sessions) as session:
            return fn(session, *args, **kwargs)

    # --- entries ------------------------------------------------------------------------

    def leg_intent(
        self,
        ladder_id: int | None,
        account: str,
        symbol: str,
        position: int,
        qty: int,
        sl_pct: float,
        target_pct: float | None,
        tag: str,
        now: datetime,
    ) -> Trade:
        """A leg and its buy (PENDING, `tag`); a first leg opens its ladder in the same step."""

        def both(session: Session) -> Trade:
            opened = ladder_id
            if opened is None:
                opened = ladders.open_ladder(session, account, symbol, now=now).id
            trade, _ = legs.add_leg_intent(
                session, opened, position, qty, sl_pct, target_pct, tag, now=now
            )
            return trade

        return self.write(both)

    def order_sent(self, tag: str, order_id: str, at: datetime) -> None:
        self.write(orders.mark_order_sent, tag, order_id, now=at)

    def entry_filled(
        self,
        trade_id: int,
        price: float,
        qty: int,
        at: datetime,
        *,
        stop: float,
        target: float | None,
        order_id: str | None,
    ) -> None:
        self.write(
            legs.record_entry_fill,
            trade_id,
            price,
            qty,
            at,
            stop=stop,
            target=target,
            broker_order_id=order_id,
        )

    def entry_cancelled(
        self, trade_id: int, state: OrderIntentState, message: str, at: datetime
    ) -> None:
        self.write(legs.cancel_entry, trade_id, now=at, order_state=state, message=message)

    # --- the GTT ------------------------------------------------------------------------

    def gtt_intent(
        self,
        trade_id: int,
        gtt_type: str,
        triggers: Sequence[float],
        limit_prices: Sequence[float],
        at: datetime,
    ) -> int:
        return self.write(gtts.gtt_intent, trade_id, gtt_type, triggers, limit_prices, now=at).id

    def gtt_placed(self, row_id: int, gtt_id: int, at: datetime) -> None:
        self.write(gtts.gtt_placed, row_id, gtt_id, now=at)

    def gtt_place_failed(self, row_id: int, message: str, at: datetime) -> None:
        self.write(gtts.gtt_place_failed, row_id, now=at, message=message[:255])

    def gtt_modify_intent(
        self, row_id: int, triggers: Sequence[float], limit_prices: Sequence[float], at: datetime
    ) -> None:
        self.write(gtts.gtt_modify_intent, row_id, triggers, limit_prices, now=at)

    def gtt_modified(self, row_id: int, at: datetime) -> None:
        self.write(gtts.gtt_modified, row_id, now=at)

    def gtt_modify_failed(self, row_id: int, message: str, at: datetime) -> None:
        self.write(gtts.gtt_modify_failed, row_id, now=at, message=message)

    def gtt_vanished(self, row_id: int, message: str, at: datetime) -> None:
        self.write(gtts.gtt_vanished, row_id, now=at, message=message)

    def gtt_deleted(self, row_id: int, at: datetime) -> None:
        self.write(gtts.gtt_deleted, row_id, now=at)

    def gtt_triggered(self, row_id: int, trigger_index: int, at: datetime) -> None:
        self.write(gtts.gtt_triggered, row_id, trigger_index, now=at)

    def gtt_order_failed(self, row_id: int, message: str, at: datetime) -> None:
        self.write(gtts.gtt_order_failed, row_id, now=at, message=message)

    # --- exits --------------------------------------------------------------------------

    def exit_intent(self, trade_id: int, reason: ExitReason, at: datetime) -> None:
        self.write(legs.exit_intent, trade_id, reason, now=at)

    def sell_intent(
        self,
        trade_id: int,
        tag: str,
        *,
        order_type: str,
        price: float | None,
        purpose: str,
        at: datetime,
    ) -> None:
        self.write(
            legs.sell_intent,
            trade_id,
            tag,
            now=at,
            order_type=order_type,
            price=price,
            purpose=purpose,
        )

    def sell_ended(self, tag: str, state: OrderIntentState, message: str, at: datetime) -> None:
        self.write(orders.exit_order_not_filled, tag, now=at, order_state=state, message=message)

    def exit_filled(
        self,
        trade_id: int,
        price: float,
        qty: int,
        at: datetime,
        pnl: LegPnl,
        *,
        tag: str | None,
        order_id: str | None,
    ) -> None:
        self.write(
            legs.record_exit_fill,
            trade_id,
            price,
            qty,
            at,
            pnl=pnl.gross,
            pnl_pct=pnl.pct,
            charges=pnl.charges,
            pnl_net=pnl.net,
            tag=tag,
            broker_order_id=order_id,
        )

    def order_modified(self, tag: str, order_type: str, at: datetime) -> None:
        self.write(orders.record_order_modified, tag, order_type, None, now=at)

    def stops_raised(self, stops: Sequence[tuple[int, float, float]], at: datetime) -> None:
        """The stops and highs raised since the last call, all in one transaction."""

        if stops:
            self.write(legs.raise_stops, stops, now=at)


def memory_journal() -> StoreJournal:
    """A journal on a fresh in-memory app database: a backtest's, gone when it ends."""
    return StoreJournal(memory_session_factory())
