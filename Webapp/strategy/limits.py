"""The account-wide limits checked before every new leg: caps, daily loss, paused entries."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from Webapp.config.params import Params
from Webapp.strategy.actions import SkipReason


@dataclass(frozen=True)
class Book:
    """What the engine knows about the whole account when it asks for a decision.

    `open_legs` and `capital_in_use` count every leg bought or being bought and not yet
    sold (pending entries included, so that two decisions cannot both take the last slot);
    `capital_in_use` is their cost (qty x entry price). `day_pnl` is today's realised +
    unrealised P&L in rupees.
    """

    open_legs: int = 0
    capital_in_use: float = 0.0
    day_pnl: float = 0.0
    entries_paused: bool = False

    def with_leg(self, qty: int, price: float) -> Book:
        """The book after one more leg of `qty` at `price` (for several decisions in one call)."""
        return replace(
            self, open_legs=self.open_legs + 1, capital_in_use=self.capital_in_use + qty * price
        )


def leg_quantity(ltp: float, params: Params) -> int:
    """floor(capital_per_position / LTP): 0 when one share costs more than that."""
    if ltp <= 0:
        return 0
    # A hair of tolerance so that 3000 / 1000.0 is 3 even when the float lands on 2.9999…
    return math.floor(params.capital_per_position / ltp + 1e-9)


def daily_loss_hit(book: Book, params: Params) -> bool:
    """True once today's P&L has fallen below −max_daily_loss: no new entries today."""
    return book.day_pnl < -params.max_daily_loss


def entries_blocked(book: Book, params: Params) -> tuple[SkipReason, str] | None:
    """A reason no new ladder or leg may open at all right now, else None."""
    if book.entries_paused:
        return SkipReason.PAUSED, "entries are paused"
    if daily_loss_hit(book, params):
        return (
            SkipReason.DAILY_LOSS,
            f"today's P&L {book.day_pnl:.2f} is below -{params.max_daily_loss:g}",
        )
    return None


def leg_refused(
    book: Book, params: Params, qty: int, price: float
) -> tuple[SkipReason, str] | None:
    """Why a new leg of `qty` at `price` may not be bought (STRATEGY.md "Limits"), else None."""
    blocked = entries_blocked(book, params)
    if blocked is not None:
        return blocked
    if qty <= 0:
        return (
            SkipReason.QTY_ZERO,
            f"one share at {price:g} costs more than {params.capital_per_position:g}",
        )
    if book.open_legs + 1 > params.max_positions:
        return SkipReason.MAX_POSITIONS, f"{book.open_legs} legs open of {params.max_positions}"
    cost = qty * price
    if book.capital_in_use + cost > params.total_capital + 1e-6:
        return (
            SkipReason.TOTAL_CAPITAL,
            f"{book.capital_in_use:.2f} in use + {cost:.2f} exceeds {params.total_capital:g}",
        )
    if cost > params.max_order_value + 1e-6:
        return SkipReason.MAX_ORDER_VALUE, f"{cost:.2f} exceeds {params.max_order_value:g}"
    return None
