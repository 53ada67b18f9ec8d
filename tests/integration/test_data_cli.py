"""`flask data import`, `flask data coverage` and `flask data fetch` (against kitesim)."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import migrated_market_store
from tests.integration.test_csv_import import KITE_HEADER, five_minute_bars, kite_lines, write
from tests.kitesim.historical import HistoricalSim
from Webapp.market.calendar import MarketCalendar
from Webapp.market.candle import Timeframe
from Webapp.market.csv_import import MAX_ERRORS


@pytest.fixture
def cli_app(app):
    return app


@pytest.fixture
def market(cli_app):
    url = cli_app.extensions["ladder"].settings.resolved_market_database_url
    with migrated_market_store(url) as store:
        yield store


def run(app, *args):
    return app.test_cli_runner().invoke(args=["data", *args])


def test_import_of_a_folder_stores_the_good_files_and_lists_the_bad_ones_lines(
    cli_app, market, tmp_path
):
    folder = tmp_path / "csv"
    folder.mkdir()
    lines = kite_lines(five_minute_bars(date(2024, 1, 1), 2))
    write(folder / "INFY_5min.csv", KITE_HEADER, lines)
    write(folder / "M&M_5min.csv", KITE_HEADER, lines)
    bad = list(lines)
    fields = bad[6].split(",")
    fields[5] = "-7"  # the volume of line 8
    bad[6] = ",".join(fields)
    write(folder / "TCS_5min.csv", KITE_HEADER, bad)
    (folder / "notes.txt").write_text("not a csv")

    result = run(cli_app, "import", str(folder))

    assert result.exit_code == 1, result.output
    assert "INFY_5min.csv: INFY 5m, 150 rows, 2024-01-01 09:15 to 2024-01-02 15:25 IST" in (
        result.output
    )
    assert "M&M_5min.csv: M&M 5m, 150 rows" in result.output
    assert "TCS_5min.csv: NOT imported, 1 problem(s):" in result.output
    assert "  TCS_5min.csv:8: volume -7 is negative" in result.output
    assert "Imported 2 of 3 file(s), 300 rows." in result.output
    assert len(market.candles("INFY", Timeframe.M5)) == 150
    assert len(market.candles("M&M", Timeframe.M5)) == 150
    assert market.first_last("TCS", Timeframe.M5) is None


def test_import_counts_every_problem_even_when_the_list_is_cut(cli_app, market, tmp_path):
    lines = kite_lines(five_minute_bars(date(2024, 1, 1), 2))
    for i in range(78):  # 78 negative volumes: more than the importer lists
        fields = lines[i].split(",")
        fields[5] = "-1"
        lines[i] = ",".join(fields)
    path = write(tmp_path / "TCS_5min.csv", KITE_HEADER, lines)

    result = run(cli_app, "import", str(path))

    assert result.exit_code == 1, result.output
    assert "TCS_5min.csv: NOT imported, 78 problem(s):" in result.output
    assert f"TCS_5min.csv: … and {78 - MAX_ERRORS} more problem(s)" in result.output
    listed = [line for line in result.output.splitlines() if "volume -1 is negative" in line]
    assert len(listed) == MAX_ERRORS


def test_import_with_explicit_options_for_a_headerless_file(cli_app, market, tmp_path):
    path = write(
        tmp_path / "export.txt",
        None,
        ["02-01-2024 09:15|100|101|99.5|100.5|10", "02-01-2024 09:20|100.5|101|100|100.75|20"],
    )
    result = run(
        cli_app, "import", str(path), "--symbol", "sbin", "--no-header", "--delimiter", "|",
        "--columns", "ts,open,high,low,close,volume", "--date-format", "%d-%m-%Y %H:%M",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "export.txt: SBIN 5m, 2 rows, 2024-01-02 09:15 to 2024-01-02 09:20 IST" in result.output
    assert [c.close for c in market.candles("SBIN", Timeframe.M5)] == [100.5, 100.75]


def test_import_refuses_one_symbol_for_many_files(cli_app, tmp_path):
    a = write(tmp_path / "A.csv", KITE_HEADER, [])
    b = write(tmp_path / "B.csv", KITE_HEADER, [])
    result = run(cli_app, "import", str(a), str(b), "--symbol", "INFY")
    assert result.exit_code == 1
    assert "--symbol names one file's symbol, but 2 files were given" in result.output


def test_coverage_prints_a_table_in_ist(cli_app, market, tmp_path):
    assert "No candles stored yet." in run(cli_app, "coverage").output
    write(tmp_path / "INFY.csv", KITE_HEADER, kite_lines(five_minute_bars(date(2024, 1, 1), 2)))
    assert run(cli_app, "import", str(tmp_path / "INFY.csv")).exit_code == 0
    result = run(cli_app, "coverage")
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.split() == ["symbol", "timeframe", "first", "(IST)", "last", "(IST)", "count",
                              "gaps"]  # fmt: skip
    assert row.split() == ["INFY", "5m", "2024-01-01", "09:15", "2024-01-02", "15:25", "150", "0"]
    assert "No candles stored for that selection." in run(cli_app, "coverage", "--symbol",
                                                          "TCS").output  # fmt: skip


@pytest.fixture
def kite_env(monkeypatch):
    with HistoricalSim() as sim:
        monkeypatch.setenv("KITE_API_KEY", sim.api_key)
        monkeypatch.setenv("KITE_ACCESS_TOKEN", sim.access_token)
        monkeypatch.setenv("KITE_ROOT", sim.url)
        yield sim


def test_fetch_stores_candles_from_kite_and_a_rerun_skips_them(cli_app, market, kite_env, tmp_path):
    universe = tmp_path / "two.csv"
    universe.write_text("symbol,ref_price\nINFY,1500\nM&M,2900\n")
    args = ["fetch", "--universe", str(universe), "--timeframe", "1d", "--from", "2024-01-01",
            "--to", "2024-03-31"]  # fmt: skip
    days = len(MarketCalendar.nse().trading_days(date(2024, 1, 1), date(2024, 3, 31)))
    result = run(cli_app, *args)
    assert result.exit_code == 0, result.output
    assert f"INFY: 1 window(s), 0 already stored, 1 request(s), {days} candles" in result.output
    assert "M&M: 1 window(s)" in result.output
    assert f"Fetched {2 * days} candles in 2 request(s)." in result.output
    assert kite_env.access_token not in result.output
    assert len(market.candles("M&M", Timeframe.D1)) == days

    again = run(cli_app, *args)
    assert again.exit_code == 0, again.output
    assert "INFY: 1 window(s), 1 already stored, 0 request(s), 0 candles" in again.output
    assert len(kite_env.historical_requests()) == 2


def test_fetch_reports_an_expired_token_without_printing_it(cli_app, kite_env):
    kite_env.expire_token()
    result = run(cli_app, "fetch", "INFY", "--timeframe", "5m", "--from", "2024-01-01")
    assert result.exit_code == 1
    assert "instrument list: TokenException" in result.output
    assert kite_env.access_token not in result.output


def test_fetch_needs_the_kite_credentials(cli_app, monkeypatch):
    monkeypatch.delenv("KITE_API_KEY", raising=False)
    monkeypatch.delenv("KITE_ACCESS_TOKEN", raising=False)
    result = run(cli_app, "fetch", "INFY", "--timeframe", "1d", "--from", "2024-01-01")
    assert result.exit_code == 1
    assert "set KITE_API_KEY and KITE_ACCESS_TOKEN" in result.output


def test_fetch_names_unknown_symbols_before_fetching(cli_app, kite_env):
    result = run(cli_app, "fetch", "INFY", "NOSUCH", "--timeframe", "1d", "--from", "2024-01-01")
    assert result.exit_code == 1
    assert "not in Kite's NSE instrument list: NOSUCH" in result.output
    assert kite_env.historical_requests() == []


def test_a_failed_fetch_window_exits_1_and_says_how_to_resume(cli_app, market, kite_env):
    kite_env.fail_next("GeneralException", message="Something broke")
    result = run(cli_app, "fetch", "INFY", "--timeframe", "1d", "--from", "2024-01-01", "--to",
                 "2024-01-31")  # fmt: skip
    assert result.exit_code == 1
    assert "INFY 1d 2024-01-01 to 2024-01-31: Kite failed: GeneralException: Something broke" in (
        result.output
    )
    assert "run the same command again to resume" in result.output
