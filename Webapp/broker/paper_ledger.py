"""The paper account's books: a fill moves cash, holding, charges and realised P&L together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from Webapp.broker import paper_book as book
from Webapp.broker import paper_store as store
from Webapp.broker.base import (
    GttRequest,
    Holding,
    InputRejected,
    Order,
    OrderState,
    OrderType,
    Position,
    Side,
)
from Webapp.broker.charges import order_charges
from Webapp.config.params import ChargesParams, Params
from Webapp.storage.paper_models import (
    PaperAccount,
    PaperFill,
    PaperGtt,
    PaperHolding,
    PaperOrder,
)


@dataclass(frozen=True)
class PaperSummary:
    """The account's money: cash now, and how it got there from the starting cash.

    cash + holdings_at_cost == starting_cash + realised_pnl − charges, always (average
    cost accounting): the property tests hold the broker to it.
    """

    starting_cash: float
    cash: float
    holdings_at_cost: float
    realised_pnl: float
    charges: float


def try_fill(
    session: Session,
    acct: PaperAccount,
    row: PaperOrder,
    ltp: float | None,
    at: datetime,
    params: Params,
) -> list[Order]:
    """Fill an open order if the price `ltp` reaches it; [] when it keeps resting."""
    if ltp is None:
        return []
    side, order_type = Side(row.side), OrderType(row.order_type)
    price = book.fill_price(side, order_type, row.price, ltp, params.paper.slippage_bps)
    if price is None:
        return []
    return [fill(session, acct, row, price, at, params.charges)]


def place_gtt_order(
    session: Session,
    acct: PaperAccount,
    gtt: PaperGtt,
    ltp: float | None,
    at: datetime,
    params: Params,
    band: tuple[float, float] | None = None,
) -> list[Order]:
    """A fired GTT's LIMIT sell at its leg's limit price, recorded in the GTT's results.

    It fills at once when `ltp` allows, else rests (until the exit timeout). Shares that
    other open sells will take are not free: selling them too is rejected, not oversold.
    A limit price outside the day's circuit `band` (lower, upper) is refused before any
    order exists, as Kite reports it: result status "failed", no order id, the reason.
    """
    leg = gtt.triggered_leg or 0
    price = gtt.limit_prices[leg]
    refusal = circuit_refusal(price, band)
    if refusal is not None:
        gtt.results = [
            {"leg": leg, "order_id": None, "status": "failed", "rejection_reason": refusal}
        ]
        gtt.updated_at = at
        return []
    row = store.new_order(
        acct,
        at,
        tag=None,
        symbol=gtt.symbol,
        exchange=gtt.exchange,
        product=gtt.product,
        side=gtt.side,
        order_type=OrderType.LIMIT.value,
        quantity=gtt.quantity,
        price=price,
        gtt_id=gtt.gtt_id,
    )
    updates = [store.record(session, row, at)]
    held = store.held_quantity(session, acct.id, gtt.exchange, gtt.symbol)
    selling = store.open_sell_quantity(session, acct.id, gtt.exchange, gtt.symbol, excluding=row.id)
    if gtt.quantity > held - selling:
        reason = f"insufficient holdings: {held - selling} free to sell, GTT sells {gtt.quantity}"
        updates.append(reject(session, row, reason, at))
    else:
        updates += try_fill(session, acct, row, ltp, at, params)
    placed = updates[-1]
    rejected = placed.state is OrderState.REJECTED
    gtt.results = [
        {
            "leg": leg,
            "order_id": placed.order_id,
            "status": placed.state.value,
            "rejection_reason": placed.status_message if rejected else None,
        }
    ]
    gtt.updated_at = at
    return updates


def circuit_refusal(price: float, band: tuple[float, float] | None) -> str | None:
    """Kite's refusal of a LIMIT price outside the day's circuit band, or None."""
    if band is None:
        return None
    lower, upper = band
    if price < lower:
        return (
            f"Your order price is lower than the current lower circuit limit of {lower:.2f}. "
            "Place an order within the daily range."
        )
    if price > upper:
        return (
            f"Your order price is higher than the current upper circuit limit of {upper:.2f}. "
            "Place an order within the daily range."
        )
    return None


def fill(
    session: Session,
    acct: PaperAccount,
    row: PaperOrder,
    price: float,
    at: datetime,
    rates: ChargesParams,
) -> Order:
    """Fill the whole of an open order at `price`: books, fill row and history, one transaction.

    A sell that would take more shares than are held is rejected instead (a GTT whose
    shares were sold by hand meanwhile): the paper broker never sells what it does not hold.
    """
    quantity = row.quantity - row.filled_quantity
    side = Side(row.side)
    position = store.holding(session, acct.id, row.exchange, row.symbol)
    held = position.quantity if position is not None else 0
    if side is Side.SELL and quantity > held:
        return reject(session, row, f"insufficient holdings: {held} held, {quantity} to sell", at)

    day = store.ist_day(at)
    value = quantity * price
    realised = 0.0
    dp_applies = False
    if side is Side.BUY:
        charges = order_charges(side, quantity, price, rates, product=row.product)
        acct.cash -= value + charges.total
        if position is None:
            position = PaperHolding(
                account_id=acct.id,
                exchange=row.exchange,
                symbol=row.symbol,
                quantity=0,
                average_price=0.0,
            )
            session.add(position)
        cost = position.quantity * position.average_price + value
        position.quantity += quantity
        position.average_price = cost / position.quantity
    else:
        # Zerodha bills DP once per scrip per day shares leave the demat account.
        dp_applies = not store.dp_billed(session, acct.id, row.exchange, row.symbol, day)
        charges = order_charges(
            side, quantity, price, rates, product=row.product, dp_applies=dp_applies
        )
        acct.cash += value - charges.total
        assert position is not None  # held >= quantity > 0
        realised = (price - position.average_price) * quantity
        position.quantity -= quantity
        if position.quantity == 0:
            position.average_price = 0.0
    acct.updated_at = at

    session.add(
        PaperFill(
            account_id=acct.id,
            order_pk=row.id,
            exchange=row.exchange,
            symbol=row.symbol,
            side=side.value,
            quantity=quantity,
            price=price,
            charges=charges.total,
            dp_charged=dp_applies,
            realised_pnl=realised,
            ist_day=day,
            at=at,
        )
    )
    row.average_price = price  # fills are whole, so the one fill's price is the average
    row.filled_quantity = row.quantity
    row.state = OrderState.FILLED.value
    row.status_message = None
    return store.record(session, row, at)


def reject(session: Session, row: PaperOrder, reason: str, at: datetime) -> Order:
    row.state = OrderState.REJECTED.value
    row.status_message = reason
    return store.record(session, row, at)


def summary(session: Session, acct: PaperAccount) -> PaperSummary:
    fills = store.fills(session, acct.id)
    positions = store.holdings(session, acct.id)
    return PaperSummary(
        starting_cash=acct.starting_cash,
        cash=acct.cash,
        holdings_at_cost=sum(h.quantity * h.average_price for h in positions),
        realised_pnl=sum(f.realised_pnl for f in fills),
        charges=sum(f.charges for f in fills),
    )


# --- what is free to sell and to spend ------------------------------------------------


def check_sellable(
    session: Session,
    account_id: int,
    exchange: str,
    symbol: str,
    quantity: int,
    *,
    excluding: int | None = None,
) -> None:
    """Refuse a sell of more than is held and not already in an open sell order."""
    held = store.held_quantity(session, account_id, exchange, symbol)
    selling = store.open_sell_quantity(session, account_id, exchange, symbol, excluding=excluding)
    if quantity > held - selling:
        raise InputRejected(
            f"{symbol}: cannot sell {quantity}: {held} held, {selling} already in open sell "
            "orders (the paper broker never sells what it does not hold)"
        )


def uncovered(
    session: Session, account_id: int, request: GttRequest, *, excluding: int | None = None
) -> int:
    """Shares of the GTT's symbol held and not yet covered by another GTT or an open sell."""
    exchange, symbol = request.exchange, request.symbol
    held = store.held_quantity(session, account_id, exchange, symbol)
    covered = store.gtt_covered_quantity(session, account_id, exchange, symbol, excluding=excluding)
    selling = store.open_sell_quantity(session, account_id, exchange, symbol)
    return held - covered - selling


def buy_refusal(
    session: Session,
    acct: PaperAccount,
    quantity: int,
    price: float,
    rates: ChargesParams,
    *,
    replacing: PaperOrder | None = None,
) -> str | None:
    """Why cash cannot cover `quantity` at `price` with its charges, or None when it can.

    Open buys hold back their reserve; `replacing` is the order being modified, whose
    own reserve is free for its new terms.
    """
    available = acct.cash - store.reserved_cash(session, acct.id, rates)
    if replacing is not None:
        available += store.buy_reserve(replacing.quantity, replacing.price or 0.0, rates)
    needed = store.buy_reserve(quantity, price, rates)
    if needed > available:
        return f"insufficient funds: needs {needed:.2f}, {available:.2f} available"
    return None


# --- holdings and positions as Kite shows them ---------------------------------------


def holdings_as_day_opened(
    rows: list[PaperHolding],
    todays_fills: list[PaperFill],
    price_of: Callable[[str], float | None],
) -> list[Holding]:
    """Kite's holdings: the shares of earlier days, with `used_quantity` sold today.

    The books hold the shares now; the day's fills are undone, newest first, to find
    what the day opened with (a sell at average cost left the average alone, and its
    realised P&L gives that average back). A sell is matched against the same day's
    buys first, as Kite does: only what it takes beyond them is `used_quantity`.
    """
    fills: dict[tuple[str, str], list[PaperFill]] = {}
    for f in todays_fills:
        fills.setdefault((f.exchange, f.symbol), []).append(f)
    result = []
    for row in rows:
        quantity, average = row.quantity, row.average_price
        bought = sold = 0
        for f in reversed(fills.get((row.exchange, row.symbol), [])):
            if f.side == Side.BUY.value:
                bought += f.quantity
                before = quantity - f.quantity
                average = (quantity * average - f.quantity * f.price) / before if before else 0.0
                quantity = before
            else:
                sold += f.quantity
                average = f.price - f.realised_pnl / f.quantity
                quantity += f.quantity
        if quantity <= 0:
            continue  # bought today: a position only
        result.append(
            Holding(
                symbol=row.symbol,
                quantity=quantity,
                average_price=round(average, 6),  # undoing fills leaves float noise
                last_price=price_of(row.symbol) or average,
                exchange=row.exchange,
                used_quantity=min(quantity, max(0, sold - bought)),
            )
        )
    return result


def positions(fills: list[PaperFill], price_of: Callable[[str], float | None]) -> list[Position]:
    """Kite's net positions from one day's fills: net quantity, its average, day P&L.

    P&L is (sell value − buy value) + net quantity × last price, as Kite reckons it.
    """
    totals: dict[tuple[str, str], _DayTotals] = {}
    for f in fills:
        day = totals.setdefault((f.exchange, f.symbol), _DayTotals())
        if f.side == Side.BUY.value:
            day.buy_quantity += f.quantity
            day.buy_value += f.quantity * f.price
        else:
            day.sell_quantity += f.quantity
            day.sell_value += f.quantity * f.price
    result = []
    for (exchange, symbol), day in totals.items():
        quantity = day.buy_quantity - day.sell_quantity
        if quantity > 0:
            average = day.buy_value / day.buy_quantity
        elif quantity < 0:
            average = day.sell_value / day.sell_quantity
        else:
            average = 0.0
        last = price_of(symbol) or average
        result.append(
            Position(
                symbol=symbol,
                quantity=quantity,
                average_price=average,
                last_price=last,
                pnl=day.sell_value - day.buy_value + quantity * last,
                exchange=exchange,
            )
        )
    return result


@dataclass
class _DayTotals:
    buy_quantity: int = 0
    buy_value: float = 0.0
    sell_quantity: int = 0
    sell_value: float = 0.0
