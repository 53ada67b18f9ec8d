"""The paper broker's persistence: its rows read and written, and turned into base.py's types.

Every function takes an open Session; the caller (PaperBroker) owns the transaction, so a
state change and everything it implies (cash, holding, fill, history row) commit together.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from Webapp.broker.base import (
    Gtt,
    GttOrderResult,
    GttState,
    GttType,
    Order,
    OrderState,
    OrderType,
    Side,
)
from Webapp.broker.charges import order_charges
from Webapp.config.params import ChargesParams
from Webapp.storage.paper_models import (
    PaperAccount,
    PaperFill,
    PaperGtt,
    PaperHolding,
    PaperOrder,
    PaperOrderEvent,
)

# Fixed offset: India has no daylight saving, and broker/ may not import market/.
IST = timezone(timedelta(hours=5, minutes=30), "IST")
_OPEN = OrderState.OPEN.value


def ist_day(at: datetime) -> date:
    """The IST trading day of an aware time: DP charges and positions are per this day."""
    return at.astimezone(IST).date()


# --- account -----------------------------------------------------------------------


def open_account(
    session: Session, name: str, *, starting_cash: float, seed: int, now: datetime
) -> PaperAccount:
    """The account called `name`, created with `starting_cash` and `seed` if it is new.

    An existing account keeps its own cash and seed: a restart continues it, whatever
    the caller passes now.
    """
    account = session.scalars(select(PaperAccount).where(PaperAccount.name == name)).one_or_none()
    if account is None:
        account = PaperAccount(
            name=name,
            seed=seed,
            starting_cash=starting_cash,
            cash=starting_cash,
            next_order_seq=1,
            next_gtt_seq=1,
            created_at=now,
            updated_at=now,
        )
        session.add(account)
        session.flush()
    return account


def account(session: Session, account_id: int) -> PaperAccount:
    return session.get_one(PaperAccount, account_id)


def take_order_id(acct: PaperAccount) -> str:
    """The next order id: the seed then a counter, digits only like Kite's."""
    seq = acct.next_order_seq
    acct.next_order_seq = seq + 1
    return f"{acct.seed}{seq:09d}"


def take_gtt_id(acct: PaperAccount) -> int:
    seq = acct.next_gtt_seq
    acct.next_gtt_seq = seq + 1
    return seq


# --- orders ------------------------------------------------------------------------


def order_row(session: Session, account_id: int, order_id: str) -> PaperOrder | None:
    return session.scalars(
        select(PaperOrder).where(
            PaperOrder.account_id == account_id, PaperOrder.order_id == order_id
        )
    ).one_or_none()


def open_orders(session: Session, account_id: int, symbol: str | None = None) -> list[PaperOrder]:
    """Open orders, oldest first: the order in which a price reaches them."""
    query = select(PaperOrder).where(PaperOrder.account_id == account_id, PaperOrder.state == _OPEN)
    if symbol is not None:
        query = query.where(PaperOrder.symbol == symbol)
    return list(session.scalars(query.order_by(PaperOrder.id)))


def orders_of_day(session: Session, account_id: int, day: date) -> list[PaperOrder]:
    """Orders placed on this IST day, and any still open from before, oldest first."""
    start = datetime.combine(day, time(0), IST).astimezone(UTC)
    return list(
        session.scalars(
            select(PaperOrder)
            .where(
                PaperOrder.account_id == account_id,
                or_(PaperOrder.placed_at >= start, PaperOrder.state == _OPEN),
            )
            .order_by(PaperOrder.id)
        )
    )


def new_order(acct: PaperAccount, at: datetime, **fields) -> PaperOrder:
    """An OPEN order of the account with the next order id, placed at `at`."""
    return PaperOrder(
        account_id=acct.id,
        order_id=take_order_id(acct),
        state=_OPEN,
        filled_quantity=0,
        average_price=0.0,
        placed_at=at,
        **fields,
    )


def record(session: Session, row: PaperOrder, at: datetime) -> Order:
    """Write the order's current state as a history row; return it as an Order."""
    row.updated_at = at
    session.add(row)
    session.flush()  # the event needs the order's primary key
    session.add(
        PaperOrderEvent(
            order_pk=row.id,
            state=row.state,
            order_type=row.order_type,
            quantity=row.quantity,
            price=row.price,
            filled_quantity=row.filled_quantity,
            average_price=row.average_price,
            status_message=row.status_message,
            at=at,
        )
    )
    return to_order(row)


def to_order(row: PaperOrder, event: PaperOrderEvent | None = None) -> Order:
    """The order as it stands (or as it stood at `event`)."""
    now = event or row
    return Order(
        order_id=row.order_id,
        tag=row.tag,
        symbol=row.symbol,
        side=Side(row.side),
        order_type=OrderType(now.order_type),
        quantity=now.quantity,
        state=OrderState(now.state),
        filled_quantity=now.filled_quantity,
        average_price=now.average_price,
        price=now.price,
        exchange=row.exchange,
        product=row.product,
        status_message=now.status_message,
        updated_at=event.at if event is not None else row.updated_at,
    )


def history(session: Session, row: PaperOrder) -> list[Order]:
    events = session.scalars(
        select(PaperOrderEvent)
        .where(PaperOrderEvent.order_pk == row.id)
        .order_by(PaperOrderEvent.id)
    )
    return [to_order(row, event) for event in events]


def open_sell_quantity(
    session: Session, account_id: int, exchange: str, symbol: str, *, excluding: int | None = None
) -> int:
    """Shares that open sell orders will take (all of their quantity: fills are whole)."""
    query = select(
        func.coalesce(func.sum(PaperOrder.quantity - PaperOrder.filled_quantity), 0)
    ).where(
        PaperOrder.account_id == account_id,
        PaperOrder.exchange == exchange,
        PaperOrder.symbol == symbol,
        PaperOrder.side == Side.SELL.value,
        PaperOrder.state == _OPEN,
    )
    if excluding is not None:
        query = query.where(PaperOrder.id != excluding)
    return int(session.scalar(query))


def buy_reserve(quantity: int, price: float, rates: ChargesParams) -> float:
    """What a resting BUY holds back: its value at the limit plus the charges at that value.

    A fill is never above the limit, so its cost never exceeds this, and cash never goes
    below zero however the reserved orders fill.
    """
    return quantity * price + order_charges(Side.BUY, quantity, price, rates).total


def reserved_cash(session: Session, account_id: int, rates: ChargesParams) -> float:
    """What open BUY orders hold back from cash."""
    return sum(
        (
            buy_reserve(row.quantity - row.filled_quantity, row.price or 0.0, rates)
            for row in open_orders(session, account_id)
            if row.side == Side.BUY.value
        ),
        0.0,
    )


# --- GTTs --------------------------------------------------------------------------


def gtt_row(session: Session, account_id: int, gtt_id: int) -> PaperGtt | None:
    return session.scalars(
        select(PaperGtt).where(PaperGtt.account_id == account_id, PaperGtt.gtt_id == gtt_id)
    ).one_or_none()


def active_gtts(session: Session, account_id: int, symbol: str | None = None) -> list[PaperGtt]:
    query = select(PaperGtt).where(
        PaperGtt.account_id == account_id, PaperGtt.state == GttState.ACTIVE.value
    )
    if symbol is not None:
        query = query.where(PaperGtt.symbol == symbol)
    return list(session.scalars(query.order_by(PaperGtt.gtt_id)))


def gtt_covered_quantity(
    session: Session, account_id: int, exchange: str, symbol: str, *, excluding: int | None = None
) -> int:
    query = select(func.coalesce(func.sum(PaperGtt.quantity), 0)).where(
        PaperGtt.account_id == account_id,
        PaperGtt.exchange == exchange,
        PaperGtt.symbol == symbol,
        PaperGtt.side == Side.SELL.value,
        PaperGtt.state == GttState.ACTIVE.value,
    )
    if excluding is not None:
        query = query.where(PaperGtt.gtt_id != excluding)
    return int(session.scalar(query))


def move_gtt(
    session: Session, pk: int, *, from_state: GttState, to_state: GttState, at: datetime, **values
) -> bool:
    """Compare-and-set a GTT's state; False when another caller moved it first.

    The WHERE on the old state is what makes a trigger happen once even when two
    brokers (or threads that slipped past the lock) see the same crossing price.
    """
    result = session.execute(
        update(PaperGtt)
        .where(PaperGtt.id == pk, PaperGtt.state == from_state.value)
        .values(state=to_state.value, updated_at=at, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def triggered_without_order(session: Session, account_id: int) -> list[int]:
    """GTTs committed as TRIGGERED whose order was never placed: a crash between the two."""
    rows = session.scalars(
        select(PaperGtt)
        .where(PaperGtt.account_id == account_id, PaperGtt.state == GttState.TRIGGERED.value)
        .order_by(PaperGtt.gtt_id)
    )
    return [row.id for row in rows if not row.results]


def to_gtt(row: PaperGtt) -> Gtt:
    return Gtt(
        gtt_id=row.gtt_id,
        symbol=row.symbol,
        gtt_type=GttType(row.gtt_type),
        state=GttState(row.state),
        triggers=tuple(row.triggers),
        limit_prices=tuple(row.limit_prices),
        last_price=row.last_price,
        quantity=row.quantity,
        side=Side(row.side),
        exchange=row.exchange,
        created_at=row.created_at,
        updated_at=row.updated_at,
        results=tuple(GttOrderResult(**result) for result in row.results or ()),
    )


# --- holdings and fills --------------------------------------------------------------


def holding(session: Session, account_id: int, exchange: str, symbol: str) -> PaperHolding | None:
    return session.scalars(
        select(PaperHolding).where(
            PaperHolding.account_id == account_id,
            PaperHolding.exchange == exchange,
            PaperHolding.symbol == symbol,
        )
    ).one_or_none()


def held_quantity(session: Session, account_id: int, exchange: str, symbol: str) -> int:
    row = holding(session, account_id, exchange, symbol)
    return row.quantity if row is not None else 0


def holdings(session: Session, account_id: int, *, sold_out: bool = False) -> list[PaperHolding]:
    """The account's holdings now (`sold_out`: with those sold down to 0 too)."""
    query = select(PaperHolding).where(PaperHolding.account_id == account_id)
    if not sold_out:
        query = query.where(PaperHolding.quantity > 0)
    return list(session.scalars(query.order_by(PaperHolding.symbol)))


def dp_billed(session: Session, account_id: int, exchange: str, symbol: str, day: date) -> bool:
    """Whether a sell of this scrip already paid the DP charge on this IST day."""
    found = session.scalar(
        select(PaperFill.id)
        .where(
            PaperFill.account_id == account_id,
            PaperFill.exchange == exchange,
            PaperFill.symbol == symbol,
            PaperFill.ist_day == day,
            PaperFill.dp_charged.is_(True),
        )
        .limit(1)
    )
    return found is not None


def fills(session: Session, account_id: int, day: date | None = None) -> list[PaperFill]:
    query = select(PaperFill).where(PaperFill.account_id == account_id)
    if day is not None:
        query = query.where(PaperFill.ist_day == day)
    return list(session.scalars(query.order_by(PaperFill.id)))
