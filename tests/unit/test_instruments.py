"""Kite's instruments list: read from the CSV dump or the API's dicts, symbol ↔ token both ways."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from Webapp.market.instruments import (
    COLUMNS,
    Instrument,
    InstrumentMap,
    UnknownInstrument,
    instruments_from_kite,
    read_instruments_csv,
)
from Webapp.market.universe import load_universe

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "instruments_nse_sample.csv"


@pytest.fixture(scope="module")
def instruments() -> InstrumentMap:
    return InstrumentMap.from_csv(SAMPLE)


def kite_records() -> list[dict]:
    """What `KiteConnect.instruments()` returns for the sample: the official client's parsing."""
    from kiteconnect import KiteConnect

    # instruments() is _get(...) then this parser; no machine here reaches Kite.
    return KiteConnect(api_key="test")._parse_instruments(SAMPLE.read_bytes())


def test_sample_has_kites_header_and_the_whole_nifty_50(instruments):
    with SAMPLE.open(newline="") as handle:
        assert tuple(next(csv.reader(handle))) == COLUMNS
    nifty = [m.symbol for m in load_universe("nifty50")]
    assert len(nifty) == 50
    assert set(instruments.for_symbols(nifty).values()) == set(nifty)


def test_csv_row_becomes_an_instrument(instruments):
    infy = instruments.instrument("INFY")
    assert infy == Instrument(
        token=infy.token,
        exchange="NSE",
        symbol="INFY",
        name="INFOSYS",
        tick_size=0.05,
        lot_size=1,
        segment="NSE",
        instrument_type="EQ",
    )
    option = instruments.instrument("INFY26DEC1600CE", exchange="NFO")
    assert (option.instrument_type, option.segment, option.lot_size) == ("CE", "NFO-OPT", 400)


def test_symbol_and_token_map_both_ways(instruments):
    token = instruments.token("M&M")
    assert instruments.symbol(token) == "M&M"
    assert instruments.token("BAJAJ-AUTO") != token
    assert instruments.symbol(instruments.token("NIFTY 50")) == "NIFTY 50"


def test_the_same_symbol_on_two_exchanges_has_two_tokens(instruments):
    nse, bse = instruments.token("INFY"), instruments.token("INFY", exchange="BSE")
    assert nse != bse
    assert instruments.symbol(bse) == "INFY"
    assert instruments.by_token(bse).exchange == "BSE"


def test_for_symbols_maps_tokens_to_symbols(instruments):
    assert instruments.for_symbols(["TCS", "INFY"]) == {
        instruments.token("TCS"): "TCS",
        instruments.token("INFY"): "INFY",
    }
    assert instruments.for_symbols([]) == {}


def test_for_symbols_names_every_unknown_symbol(instruments):
    with pytest.raises(UnknownInstrument, match=r"2 symbol\(s\) not in the NSE .*: NOPE, HDFC$"):
        instruments.for_symbols(["INFY", "NOPE", "TCS", "HDFC"])
    # A symbol listed only on another exchange is unknown on this one.
    with pytest.raises(UnknownInstrument, match="TCS"):
        instruments.for_symbols(["TCS"], exchange="BSE")


def test_unknown_symbol_or_token_says_which(instruments):
    with pytest.raises(UnknownInstrument, match="NSE:NOPE"):
        instruments.token("NOPE")
    with pytest.raises(UnknownInstrument, match="123"):
        instruments.symbol(123)


def test_kite_api_records_give_the_same_map_as_the_csv(instruments):
    from_api = InstrumentMap.from_kite(kite_records())
    assert len(from_api) == len(instruments) == 56
    assert instruments_from_kite(kite_records()) == read_instruments_csv(SAMPLE)


def test_reads_an_open_file_with_quoted_names():
    text = ",".join(COLUMNS) + '\n5633,22,ACC,"ACC, LTD.",0,,0,0.05,1,EQ,NSE,NSE\n'
    (acc,) = read_instruments_csv(io.StringIO(text))
    assert (acc.token, acc.symbol, acc.name) == (5633, "ACC", "ACC, LTD.")


def test_a_file_without_kites_columns_is_refused(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("symbol,token\nINFY,1\n")
    with pytest.raises(ValueError, match=r"wrong\.csv:1: .*missing instrument_token"):
        read_instruments_csv(path)


def test_a_bad_row_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    good = "408065,1594,INFY,INFOSYS,0,,0,0.05,1,EQ,NSE,NSE"
    path.write_text(",".join(COLUMNS) + f"\n{good}\nx,1,TCS,TCS,0,,0,0.05,1,EQ,NSE,NSE\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: bad instrument row"):
        read_instruments_csv(path)


def test_a_token_or_symbol_listed_twice_is_refused():
    infy = Instrument(408065, "NSE", "INFY", "INFOSYS", 0.05, 1, "NSE", "EQ")
    with pytest.raises(ValueError, match="token 408065"):
        InstrumentMap([infy, Instrument(408065, "NSE", "TCS", "TCS", 0.05, 1, "NSE", "EQ")])
    with pytest.raises(ValueError, match="NSE:INFY"):
        InstrumentMap([infy, Instrument(1, "NSE", "INFY", "INFOSYS", 0.05, 1, "NSE", "EQ")])
