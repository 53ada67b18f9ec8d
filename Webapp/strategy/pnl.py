"""A sold leg's P&L: gross, percent, charges and net, written once here and stored as computed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LegPnl:
    gross: float  # rupees, (exit - entry) × qty, to the paisa
    pct: float  # exit / entry - 1, in percent (2.5 is 2.5%)
    charges: float  # every charge of the leg, buy and sell, to the paisa
    net: float  # gross - charges


def sold_leg_pnl(entry_price: float, exit_price: float, qty: int, charges: float) -> LegPnl:
    gross = (exit_price - entry_price) * qty
    return LegPnl(
        gross=round(gross, 2),
        pct=round((exit_price / entry_price - 1) * 100, 4),
        charges=round(charges, 2),
        net=round(gross - charges, 2),
    )
