"""kitesim's packet encoder, proven against kiteconnect's own parser and its own decoder."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from kiteconnect import KiteTicker

from tests.kitesim.packets import (
    HEARTBEAT,
    MODES,
    PACKET_LENGTHS,
    DepthLevel,
    Tick,
    decode_frame,
    encode_frame,
    encode_packet,
)
from tests.kitesim.ticker import GARBAGE

INFY = 408065  # NSE (segment 1)
NIFTY_50 = 256265  # indices (segment 9)
USDINR_FUT = 412675  # CDS (segment 3): prices in 1/10,000,000

TRADE_AT = datetime(2026, 3, 2, 4, 15, 30, tzinfo=UTC)
STAMP_AT = datetime(2026, 3, 2, 4, 15, 31, tzinfo=UTC)

FULL_TICK = Tick(
    INFY,
    1523.45,
    last_quantity=7,
    average_price=1519.8,
    volume=1_234_567,
    buy_quantity=40_000,
    sell_quantity=38_500,
    open=1510.0,
    high=1530.25,
    low=1505.5,
    close=1508.9,
    last_trade_time=TRADE_AT,
    oi=0,
    oi_day_high=0,
    oi_day_low=0,
    exchange_timestamp=STAMP_AT,
    bids=tuple(
        DepthLevel(round(1523.4 - level / 20, 2), 100 + level, 3 + level) for level in range(5)
    ),
    offers=tuple(
        DepthLevel(round(1523.5 + level / 20, 2), 200 + level, 1 + level) for level in range(5)
    ),
)
INDEX_TICK = Tick(
    NIFTY_50, 22514.65, open=22400.1, high=22550.0, low=22390.35, close=22450.5,
    exchange_timestamp=STAMP_AT,
)  # fmt: skip


def kite_parse(frame: bytes) -> list[dict]:
    """The official parser, on an instance as KiteTicker calls it."""
    return KiteTicker("api_key", "access_token")._parse_binary(frame)


def local_naive(moment: datetime) -> datetime:
    """kiteconnect builds times with datetime.fromtimestamp(): naive, in local time."""
    return datetime.fromtimestamp(moment.timestamp())


def test_ltp_packet_round_trips_through_kiteconnect():
    (parsed,) = kite_parse(encode_frame([encode_packet(FULL_TICK, "ltp")]))
    assert parsed == {
        "tradable": True,
        "mode": "ltp",
        "instrument_token": INFY,
        "last_price": 1523.45,
    }


def test_quote_packet_round_trips_through_kiteconnect():
    (parsed,) = kite_parse(encode_frame([encode_packet(FULL_TICK, "quote")]))
    assert parsed["mode"] == "quote"
    assert parsed["last_price"] == 1523.45
    assert parsed["last_traded_quantity"] == 7
    assert parsed["average_traded_price"] == 1519.8
    assert parsed["volume_traded"] == 1_234_567
    assert (parsed["total_buy_quantity"], parsed["total_sell_quantity"]) == (40_000, 38_500)
    assert parsed["ohlc"] == {"open": 1510.0, "high": 1530.25, "low": 1505.5, "close": 1508.9}
    assert "exchange_timestamp" not in parsed


def test_full_packet_round_trips_through_kiteconnect_with_times_and_depth():
    (parsed,) = kite_parse(encode_frame([encode_packet(FULL_TICK, "full")]))
    assert parsed["mode"] == "full"
    assert parsed["volume_traded"] == 1_234_567
    assert parsed["last_trade_time"] == local_naive(TRADE_AT)
    assert parsed["exchange_timestamp"] == local_naive(STAMP_AT)
    assert parsed["depth"]["buy"][0] == {"quantity": 100, "price": 1523.4, "orders": 3}
    assert parsed["depth"]["sell"][4] == {"quantity": 204, "price": 1523.7, "orders": 5}
    assert [level["price"] for level in parsed["depth"]["buy"]] == [
        level.price for level in FULL_TICK.bids
    ]


@pytest.mark.parametrize("mode", ["quote", "full"])
def test_index_packets_round_trip_through_kiteconnect(mode):
    packet = encode_packet(INDEX_TICK, mode)
    assert len(packet) == {"quote": 28, "full": 32}[mode]
    (parsed,) = kite_parse(encode_frame([packet]))
    assert (parsed["mode"], parsed["tradable"], parsed["last_price"]) == (mode, False, 22514.65)
    assert parsed["ohlc"] == {"open": 22400.1, "high": 22550.0, "low": 22390.35, "close": 22450.5}
    if mode == "full":
        assert parsed["exchange_timestamp"] == local_naive(STAMP_AT)


def test_packet_lengths_are_kites():
    assert [len(encode_packet(FULL_TICK, mode)) for mode in MODES] == [8, 44, 184]
    assert [len(encode_packet(INDEX_TICK, mode)) for mode in MODES] == [8, 28, 32]
    assert PACKET_LENGTHS[(False, "full")] == 184


def test_currency_prices_use_the_cds_divisor():
    tick = Tick(USDINR_FUT, 83.1234567, open=83.0, high=83.2, low=82.9, close=83.05)
    (parsed,) = kite_parse(encode_frame([encode_packet(tick, "quote")]))
    assert parsed["last_price"] == pytest.approx(83.1234567, abs=1e-7)


def test_a_frame_of_mixed_packets_parses_in_order():
    frame = encode_frame(
        [
            encode_packet(FULL_TICK, "full"),
            encode_packet(INDEX_TICK, "quote"),
            encode_packet(Tick(INFY, 1524.0), "ltp"),
        ]
    )
    parsed = kite_parse(frame)
    assert [(p["instrument_token"], p["mode"]) for p in parsed] == [
        (INFY, "full"),
        (NIFTY_50, "quote"),
        (INFY, "ltp"),
    ]
    assert [mode for mode, _ in decode_frame(frame)] == ["full", "quote", "ltp"]


@pytest.mark.parametrize("mode", MODES)
def test_decoder_round_trips_what_the_mode_carries(mode):
    ((decoded_mode, decoded),) = decode_frame(encode_frame([encode_packet(FULL_TICK, mode)]))
    assert decoded_mode == mode
    if mode == "full":
        assert decoded == FULL_TICK
    elif mode == "quote":
        assert decoded.volume == FULL_TICK.volume and decoded.close == FULL_TICK.close
        assert decoded.exchange_timestamp is None
    else:
        assert decoded == Tick(INFY, FULL_TICK.last_price)


def test_heartbeats_carry_no_ticks():
    assert kite_parse(HEARTBEAT) == []
    assert decode_frame(HEARTBEAT) == []


def test_truncated_garbage_breaks_kiteconnect_and_the_decoder_says_why():
    with pytest.raises(struct.error):
        kite_parse(GARBAGE["truncated"])
    with pytest.raises(ValueError, match="packet 1 of 3"):
        decode_frame(GARBAGE["truncated"])


def test_unknown_length_packets_are_skipped_by_kiteconnect():
    assert kite_parse(GARBAGE["unknown_length"]) == []
    with pytest.raises(ValueError, match="13 bytes"):
        decode_frame(GARBAGE["unknown_length"])


@pytest.mark.parametrize(
    ("tick", "mode", "message"),
    [
        (Tick(INFY, -1.0), "ltp", "last_price"),
        (Tick(INFY, 1.0, exchange_timestamp=datetime(2026, 1, 1)), "full", "tz-aware"),
        (Tick(INFY, 1.0, bids=(DepthLevel(1.0, 1, 1),) * 6), "full", "5"),
        (Tick(INFY, 1.0), "snap", "mode"),
    ],
)
def test_encoder_refuses_what_a_packet_cannot_carry(tick, mode, message):
    with pytest.raises(ValueError, match=message):
        encode_packet(tick, mode)
