"""Kite ticker binary packets: encode a Tick in ltp/quote/full mode, frame packets, decode frames.

Layouts (big-endian; prices are integers in the segment's unit, paise for most):

- ltp, 8 bytes: token, last_price.
- quote, 44 bytes: token, last_price, last_quantity, average_price, volume,
  buy_quantity, sell_quantity, open, high, low, close.
- full, 184 bytes: quote, then last_trade_time, oi, oi_day_high, oi_day_low,
  exchange_timestamp (epoch seconds), then 10 depth entries of 12 bytes
  (quantity, price, orders as uint16, 2 bytes padding), 5 bids then 5 offers.
- index quote, 28 bytes: token, last_price, high, low, open, close, change;
  index full, 32 bytes: index quote, then exchange_timestamp.

A frame is a uint16 packet count, then each packet preceded by its uint16
length. A 1-byte binary message is a heartbeat. The segment is the low byte of
the instrument token; `decode_frame` is an independent decoder for tests (the
official parser is `KiteTicker._parse_binary`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

MODE_LTP = "ltp"
MODE_QUOTE = "quote"
MODE_FULL = "full"
MODES = (MODE_LTP, MODE_QUOTE, MODE_FULL)

HEARTBEAT = b"\x00"

SEGMENT_CDS = 3
SEGMENT_BCD = 6
SEGMENT_INDICES = 9
SEGMENT_NCO = 12

DEPTH_LEVELS = 5
_UINT32_MAX = 2**32 - 1
_DEPTH = struct.Struct(">IIH2x")
_QUOTE = struct.Struct(">11I")
_FULL_TAIL = struct.Struct(">5I")
_INDEX_QUOTE = struct.Struct(">6Ii")
_LEN = struct.Struct(">H")

PACKET_LENGTHS = {
    (False, MODE_LTP): 8,
    (False, MODE_QUOTE): _QUOTE.size,
    (False, MODE_FULL): _QUOTE.size + _FULL_TAIL.size + 2 * DEPTH_LEVELS * _DEPTH.size,
    (True, MODE_LTP): 8,
    (True, MODE_QUOTE): _INDEX_QUOTE.size,
    (True, MODE_FULL): _INDEX_QUOTE.size + 4,
}


@dataclass(frozen=True)
class DepthLevel:
    """One level of the order book: total quantity at a price and how many orders make it."""

    price: float
    quantity: int
    orders: int


@dataclass(frozen=True)
class Tick:
    """Everything a full-mode packet can carry for one instrument; ltp/quote send a subset.

    Times are tz-aware datetimes (sent as epoch seconds); None is sent as 0.
    """

    instrument_token: int
    last_price: float
    last_quantity: int = 0
    average_price: float = 0.0
    volume: int = 0
    buy_quantity: int = 0
    sell_quantity: int = 0
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    close: float = 0.0
    last_trade_time: datetime | None = None
    oi: int = 0
    oi_day_high: int = 0
    oi_day_low: int = 0
    exchange_timestamp: datetime | None = None
    bids: tuple[DepthLevel, ...] = field(default=())
    offers: tuple[DepthLevel, ...] = field(default=())


def segment(token: int) -> int:
    return token & 0xFF


def is_index(token: int) -> bool:
    return segment(token) == SEGMENT_INDICES


def price_divisor(token: int) -> float:
    """What the integer prices of `token`'s segment are divided by (100: paise)."""
    seg = segment(token)
    if seg == SEGMENT_CDS:
        return 10_000_000.0
    if seg in (SEGMENT_BCD, SEGMENT_NCO):
        return 10_000.0
    return 100.0


def _uint(value: int, what: str) -> int:
    if not 0 <= value <= _UINT32_MAX:
        raise ValueError(f"{what} {value!r} does not fit the packet's unsigned 32-bit field")
    return value


def _price(value: float, divisor: float, what: str) -> int:
    return _uint(round(value * divisor), what)


def _epoch(moment: datetime | None, what: str) -> int:
    if moment is None:
        return 0
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be tz-aware, got naive {moment!r}")
    return _uint(int(moment.timestamp()), what)


def encode_packet(tick: Tick, mode: str) -> bytes:
    """The packet Kite sends for `tick` in `mode`; index tokens get the index layouts."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    token = _uint(tick.instrument_token, "instrument_token")
    div = price_divisor(token)
    ltp = _price(tick.last_price, div, "last_price")
    if mode == MODE_LTP:
        return struct.pack(">II", token, ltp)
    if is_index(token):
        close = _price(tick.close, div, "close")
        packet = _INDEX_QUOTE.pack(
            token,
            ltp,
            _price(tick.high, div, "high"),
            _price(tick.low, div, "low"),
            _price(tick.open, div, "open"),
            close,
            ltp - close,
        )
        if mode == MODE_FULL:
            packet += struct.pack(">I", _epoch(tick.exchange_timestamp, "exchange_timestamp"))
        return packet
    packet = _QUOTE.pack(
        token,
        ltp,
        _uint(tick.last_quantity, "last_quantity"),
        _price(tick.average_price, div, "average_price"),
        _uint(tick.volume, "volume"),
        _uint(tick.buy_quantity, "buy_quantity"),
        _uint(tick.sell_quantity, "sell_quantity"),
        _price(tick.open, div, "open"),
        _price(tick.high, div, "high"),
        _price(tick.low, div, "low"),
        _price(tick.close, div, "close"),
    )
    if mode == MODE_QUOTE:
        return packet
    packet += _FULL_TAIL.pack(
        _epoch(tick.last_trade_time, "last_trade_time"),
        _uint(tick.oi, "oi"),
        _uint(tick.oi_day_high, "oi_day_high"),
        _uint(tick.oi_day_low, "oi_day_low"),
        _epoch(tick.exchange_timestamp, "exchange_timestamp"),
    )
    for side, levels in (("bids", tick.bids), ("offers", tick.offers)):
        if len(levels) > DEPTH_LEVELS:
            raise ValueError(f"{side} has {len(levels)} levels; a packet carries {DEPTH_LEVELS}")
        for level in levels:
            if not 0 <= level.orders <= 0xFFFF:
                raise ValueError(f"depth orders {level.orders!r} does not fit 16 bits")
            packet += _DEPTH.pack(
                _uint(level.quantity, "depth quantity"),
                _price(level.price, div, "depth price"),
                level.orders,
            )
        packet += bytes(_DEPTH.size * (DEPTH_LEVELS - len(levels)))
    return packet


def encode_frame(packets: Iterable[bytes]) -> bytes:
    """One binary websocket message: packet count, then each packet with its length."""
    packets = list(packets)
    if len(packets) > 0xFFFF:
        raise ValueError(f"{len(packets)} packets do not fit one frame (at most 65535)")
    parts = [_LEN.pack(len(packets))]
    for packet in packets:
        parts.append(_LEN.pack(len(packet)))
        parts.append(packet)
    return b"".join(parts)


def _from_epoch(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def decode_packet(packet: bytes) -> tuple[str, Tick]:
    """(mode, Tick) for one packet; fields the mode does not carry keep their defaults."""
    if len(packet) < 8:
        raise ValueError(f"a packet has at least 8 bytes, got {len(packet)}")
    token, ltp_units = struct.unpack_from(">II", packet)
    index = is_index(token)
    modes = {length: mode for (idx, mode), length in PACKET_LENGTHS.items() if idx == index}
    mode = modes.get(len(packet))
    if mode is None:
        kind = "index" if index else "instrument"
        raise ValueError(f"no {kind} packet is {len(packet)} bytes long (token {token})")
    div = price_divisor(token)
    if mode == MODE_LTP:
        return mode, Tick(token, ltp_units / div)
    if index:
        _, _, high, low, open_, close, _change = _INDEX_QUOTE.unpack_from(packet)
        stamp = struct.unpack_from(">I", packet, 28)[0] if mode == MODE_FULL else 0
        return mode, Tick(
            token,
            ltp_units / div,
            open=open_ / div,
            high=high / div,
            low=low / div,
            close=close / div,
            exchange_timestamp=_from_epoch(stamp),
        )
    (_, _, last_qty, avg, volume, buy_qty, sell_qty, open_, high, low, close) = _QUOTE.unpack_from(
        packet
    )
    tick = Tick(
        token,
        ltp_units / div,
        last_quantity=last_qty,
        average_price=avg / div,
        volume=volume,
        buy_quantity=buy_qty,
        sell_quantity=sell_qty,
        open=open_ / div,
        high=high / div,
        low=low / div,
        close=close / div,
    )
    if mode == MODE_QUOTE:
        return mode, tick
    last_trade, oi, oi_high, oi_low, stamp = _FULL_TAIL.unpack_from(packet, _QUOTE.size)
    levels = []
    offset = _QUOTE.size + _FULL_TAIL.size
    for _ in range(2 * DEPTH_LEVELS):
        quantity, price, orders = _DEPTH.unpack_from(packet, offset)
        levels.append(DepthLevel(price / div, quantity, orders))
        offset += _DEPTH.size
    empty = DepthLevel(0.0, 0, 0)
    return mode, replace(
        tick,
        last_trade_time=_from_epoch(last_trade),
        oi=oi,
        oi_day_high=oi_high,
        oi_day_low=oi_low,
        exchange_timestamp=_from_epoch(stamp),
        bids=tuple(level for level in levels[:DEPTH_LEVELS] if level != empty),
        offers=tuple(level for level in levels[DEPTH_LEVELS:] if level != empty),
    )


def decode_frame(frame: bytes) -> list[tuple[str, Tick]]:
    """Every packet of one binary message; [] for a heartbeat. ValueError if malformed."""
    if len(frame) < 2:
        return []
    (count,) = _LEN.unpack_from(frame)
    offset = 2
    decoded = []
    for number in range(1, count + 1):
        if offset + 2 > len(frame):
            raise ValueError(f"frame ends before the length of packet {number} of {count}")
        (length,) = _LEN.unpack_from(frame, offset)
        offset += 2
        if offset + length > len(frame):
            raise ValueError(f"packet {number} of {count} claims {length} bytes past the frame end")
        decoded.append(decode_packet(frame[offset : offset + length]))
        offset += length
    if offset != len(frame):
        raise ValueError(f"{len(frame) - offset} stray bytes after {count} packets")
    return decoded
