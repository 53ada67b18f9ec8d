"""Universe CSVs: the shipped NIFTY 50 list, name resolution, and bad rows reported by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from Webapp.market.universe import UNIVERSE_DIR, UniverseMember, load_universe

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_nifty50_lists_50_unique_symbols_sorted_with_positive_prices_on_the_tick():
    members = load_universe("nifty50")
    symbols = [member.symbol for member in members]

    assert len(members) == 50
    assert len(set(symbols)) == 50
    assert symbols == sorted(symbols)
    assert {"M&M", "BAJAJ-AUTO", "RELIANCE", "TCS"} <= set(symbols)
    for member in members:
        assert member.ref_price > 0
        assert abs(member.ref_price / 0.05 - round(member.ref_price / 0.05)) < 1e-6


def test_bare_name_resolves_to_support_files_universe():
    assert UNIVERSE_DIR == ROOT / "support_files" / "universe"
    assert load_universe("nifty50") == load_universe(ROOT / "support_files/universe/nifty50.csv")


def test_path_is_read_as_is_and_keeps_file_order(tmp_path):
    path = _write(tmp_path, "symbol,ref_price\nTCS,2888.40\nINFY,1441.8\n\n")

    assert load_universe(path) == [
        UniverseMember("TCS", 2888.4),
        UniverseMember("INFY", 1441.8),
    ]
    assert load_universe(str(path)) == load_universe(path)


def test_extra_columns_in_any_order_are_ignored(tmp_path):
    path = _write(tmp_path, "sector,ref_price,symbol\nIT,2888.40,TCS\n")

    assert load_universe(path) == [UniverseMember("TCS", 2888.4)]


@pytest.mark.parametrize(
    ("body", "line", "complaint"),
    [
        ("TCS,2888.4\nINFY,0\n", 3, "must be positive"),
        ("TCS,-5\n", 2, "must be positive"),
        ("TCS,2888.4\nINFY,abc\n", 3, "not a number"),
        ("TCS,nan\n", 2, "must be positive"),
        ("TCS,2888.4\nINFY,\n", 3, "missing ref_price"),
        ("TCS,2888.4\n,100\n", 3, "missing symbol"),
        ("TCS\n", 2, "expected 2 fields"),
        ("TCS,2888.4\nINFY,1441.8\nTCS,2890\n", 4, r"duplicate symbol TCS \(first on line 2\)"),
    ],
    ids=["zero", "negative", "not-a-number", "nan", "no-price", "no-symbol", "short-row", "dup"],
)
def test_bad_row_is_reported_with_file_and_line(tmp_path, body, line, complaint):
    path = _write(tmp_path, "symbol,ref_price\n" + body)

    with pytest.raises(ValueError, match=complaint) as raised:
        load_universe(path)

    assert f"{path}:{line}:" in str(raised.value)


def test_header_without_ref_price_is_reported_on_line_1(tmp_path):
    path = _write(tmp_path, "symbol,price\nTCS,2888.4\n")

    with pytest.raises(ValueError, match="ref_price") as raised:
        load_universe(path)

    assert f"{path}:1:" in str(raised.value)


def test_file_with_a_header_but_no_rows_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no symbols"):
        load_universe(_write(tmp_path, "symbol,ref_price\n"))


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_universe(tmp_path / "absent.csv")
    with pytest.raises(FileNotFoundError, match="nifty5000.csv"):
        load_universe("nifty5000")
