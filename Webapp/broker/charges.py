"""Zerodha equity charges (delivery and intraday) for one order and one round trip.

Every rate comes from the `charges:` section of param.yaml (`ChargesParams`); nothing
here is a number Zerodha could change.

Rounding, as Zerodha's brokerage calculator and contract note do it:
  - amounts are computed exactly (decimal arithmetic on the prices as written, so
    1500.05 is 1500.05 and not its binary neighbour), then each component is rounded
    half up: STT to the rupee, every other component to the paisa;
  - STT goes to the rupee because the tax is levied in whole rupees (50 paise and
    above count as a rupee): the calculator shows an intraday sell STT of 2.525 as 3;
  - GST is 18% of the already-rounded brokerage + transaction charge + SEBI fee
    (+ DP charge), rounded to the paisa, as the calculator builds it;
  - each order is rounded on its own. A delivery buy and its sell fall on different
    days, so on different contract notes, and that is also what the paper broker
    charges per fill. The calculator rounds a whole round trip's sum once instead,
    which can differ by a paisa (or by a rupee of STT on delivery).

The DP charge (depository, `dp_charge` + GST) is billed once per scrip per day on
which shares of it leave the demat account, however many sell orders that day: the
caller knows the day's earlier sells, so it passes `dp_applies=False` to
`order_charges` for every CNC sell of a scrip after the first one that day. Buys and
intraday (MIS) orders never pay it: MIS shares never reach the demat account.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal
from typing import ClassVar

from Webapp.broker.base import PRODUCT_CNC, Side
from Webapp.config.params import ChargesParams

PRODUCT_MIS = "MIS"  # Kite's intraday equity product
PRODUCTS = (PRODUCT_CNC, PRODUCT_MIS)

_PAISA = Decimal("0.01")
_RUPEE = Decimal("1")
_HUNDRED = Decimal(100)
_CRORE = Decimal(10_000_000)


@dataclass(frozen=True)
class Charges:
    """What one order (or several, added up) costs beyond the price, in rupees."""

    brokerage: float
    stt: float
    transaction: float  # NSE transaction charge
    sebi: float
    stamp_duty: float
    gst: float
    dp: float

    ZERO: ClassVar[Charges]

    @property
    def total(self) -> float:
        return round(sum(getattr(self, f.name) for f in fields(self)), 2)

    def __add__(self, other: Charges) -> Charges:
        if not isinstance(other, Charges):
            return NotImplemented
        # Each part is a whole number of paise; rounding drops the float noise of the sum.
        return Charges(
            *(round(getattr(self, f.name) + getattr(other, f.name), 2) for f in fields(self))
        )

    @classmethod
    def zero(cls) -> Charges:
        return cls.ZERO


Charges.ZERO = Charges(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def order_charges(
    side: Side,
    quantity: int,
    price: float,
    rates: ChargesParams,
    *,
    product: str = PRODUCT_CNC,
    dp_applies: bool | None = None,
) -> Charges:
    """The charges of one executed order of `quantity` shares at `price`.

    `dp_applies` is read for a CNC sell only: None or True bills the DP charge, False
    is a later sell of the same scrip on a day it was already billed (see the module
    docstring). Raises ValueError for a quantity or price that is not positive, or an
    unknown product.
    """
    side = Side(side)
    _check_quantity(quantity)
    _check_price(price)
    _check_product(product)
    value = _dec(price) * quantity
    buy, sell = side is Side.BUY, side is Side.SELL

    if product == PRODUCT_CNC:
        brokerage = _dec(rates.brokerage)
        stt = _pct(value, rates.stt_pct)
        stamp_duty = _pct(value, rates.stamp_duty_pct) if buy else Decimal(0)
        dp = _dec(rates.dp_charge) if sell and dp_applies is not False else Decimal(0)
    else:
        intraday = rates.intraday
        brokerage = min(_pct(value, intraday.brokerage_pct), _dec(intraday.brokerage_max))
        stt = _pct(value, intraday.stt_sell_pct) if sell else Decimal(0)
        stamp_duty = _pct(value, intraday.stamp_duty_pct) if buy else Decimal(0)
        dp = Decimal(0)
    # The exchange, SEBI and GST rates are the same for both products: one copy in the file.
    transaction = _pct(value, rates.nse_txn_pct)
    sebi = value * _dec(rates.sebi_per_crore) / _CRORE

    brokerage, transaction, sebi, stamp_duty, dp = (
        _to(amount, _PAISA) for amount in (brokerage, transaction, sebi, stamp_duty, dp)
    )
    gst = _to(_pct(brokerage + transaction + sebi + dp, rates.gst_pct), _PAISA)
    return Charges(
        brokerage=float(brokerage),
        stt=float(_to(stt, _RUPEE)),
        transaction=float(transaction),
        sebi=float(sebi),
        stamp_duty=float(stamp_duty),
        gst=float(gst),
        dp=float(dp),
    )


def round_trip_charges(
    quantity: int,
    buy_price: float,
    sell_price: float,
    rates: ChargesParams,
    *,
    product: str = PRODUCT_CNC,
) -> Charges:
    """A buy and its sell of the same quantity; a CNC sell pays the DP charge."""
    buy = order_charges(Side.BUY, quantity, buy_price, rates, product=product)
    sell = order_charges(Side.SELL, quantity, sell_price, rates, product=product, dp_applies=True)
    return buy + sell


def net_pnl(
    quantity: int,
    buy_price: float,
    sell_price: float,
    rates: ChargesParams,
    product: str = PRODUCT_CNC,
) -> tuple[float, float]:
    """(gross, net) P&L of a round trip in rupees: net is gross minus its charges."""
    charges = round_trip_charges(quantity, buy_price, sell_price, rates, product=product)
    gross = _to((_dec(sell_price) - _dec(buy_price)) * quantity, _PAISA)
    return float(gross), float(gross - _dec(charges.total))


# --- helpers -----------------------------------------------------------------------


def _dec(amount: float) -> Decimal:
    # repr is the shortest text that reads back as the same float: the price as written.
    return Decimal(repr(float(amount)))


def _pct(amount: Decimal, pct: float) -> Decimal:
    return amount * _dec(pct) / _HUNDRED


def _to(amount: Decimal, step: Decimal) -> Decimal:
    return amount.quantize(step, rounding=ROUND_HALF_UP)


def _check_quantity(quantity: int) -> None:
    # bool is an int to Python, and a float quantity is a bug upstream: refuse both.
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise ValueError(f"quantity must be a whole number of shares > 0, got {quantity!r}")


def _check_price(price: float) -> None:
    is_number = isinstance(price, int | float) and not isinstance(price, bool)
    if not is_number or not math.isfinite(price) or price <= 0:
        raise ValueError(f"price must be a number of rupees > 0, got {price!r}")


def _check_product(product: str) -> None:
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {', '.join(PRODUCTS)}, got {product!r}")
