"""The parameters file: the shipped defaults, and every way a bad file is refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from Webapp.config.params import (
    Params,
    ParamsError,
    check_params_file,
    load_params,
    parse_params,
)

SHIPPED = Path(__file__).resolve().parents[2] / "support_files" / "param.yaml"
DELETE = object()


def shipped_data() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def mutated(data: dict[str, Any], key_path: str, value: Any) -> dict[str, Any]:
    *parents, last = key_path.split(".")
    node = data
    for parent in parents:
        node = node[parent]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


def write_yaml(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "param.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    return caught.value.errors


# --- the shipped file -----------------------------------------------------------------------


def test_shipped_file_is_valid():
    assert check_params_file(SHIPPED) == []
    assert isinstance(load_params(SHIPPED), Params)


def test_shipped_file_holds_the_defaults_of_strategy_md():
    p = load_params(SHIPPED)
    assert p.universe == "nifty50"
    assert p.feed.mode == "quote"
    assert p.scan_interval_s == 60
    assert p.entry_window.start == time(9, 30)
    assert p.entry_window.end == time(15, 0)
    assert p.signal_timeframe == "15m"
    assert (p.min_day_change_pct, p.max_day_change_pct) == (1.0, 5.0)
    assert p.stale_after_s == 10
    assert p.max_new_ladders_per_scan == 3
    assert (p.p1.sl_pct, p.p1.target_pct) == (2.5, 5.0)
    assert (p.p2.trigger_pct, p.p2.sl_pct) == (0.25, 2.5)
    assert (p.p3.trigger_pct, p.p3.sl_pct) == (1.0, 5.0)
    assert p.capital_per_position == 3000
    assert p.cooldown_minutes == 60
    assert p.gtt.limit_buffer_pct == 0.5
    assert p.gtt.min_step_pct == 0.5
    assert p.gtt.min_interval_s == 60
    assert p.exit_timeout_s == 30
    assert p.max_positions == 90
    assert p.total_capital == 240_000
    assert p.max_daily_loss == 5_000
    assert p.max_order_value == 50_000
    assert p.charges.brokerage == 0
    assert p.charges.stt_pct == 0.1
    assert p.charges.nse_txn_pct == 0.00297
    assert p.charges.sebi_per_crore == 10
    assert p.charges.stamp_duty_pct == 0.015
    assert p.charges.gst_pct == 18
    assert p.charges.dp_charge == 13.50
    assert p.charges.intraday.brokerage_pct == 0.03
    assert p.charges.intraday.brokerage_max == 20
    assert p.charges.intraday.stt_sell_pct == 0.025
    assert p.charges.intraday.stamp_duty_pct == 0.003
    assert p.paper.slippage_bps == 5


def test_params_are_frozen():
    p = load_params(SHIPPED)
    with pytest.raises(ValidationError):
        p.p1.sl_pct = 1.0  # type: ignore[misc]


# --- one mutation of the shipped file each ----------------------------------------------------


@dataclass(frozen=True)
class Bad:
    name: str
    key: str  # the key changed, dotted
    value: Any  # the new value, or DELETE
    reason: str  # a fragment the reason must contain
    error_key: str = ""  # the key path the error must name, when not `key`


GE = "must be greater than or equal to"
INTRADAY_CHARGES = ("brokerage_pct", "brokerage_max", "stt_sell_pct", "stamp_duty_pct")
BAD_FILES = [
    Bad("negative pct", "gtt.limit_buffer_pct", -0.5, f"{GE} 0"),
    Bad("negative charge pct", "charges.stt_pct", -0.1, f"{GE} 0"),
    Bad("negative amount", "charges.dp_charge", -13.5, f"{GE} 0"),
    Bad("zero stop-loss", "p1.sl_pct", 0, "must be greater than 0"),
    Bad("stop-loss of 100%", "p3.sl_pct", 100, "must be less than 100"),
    Bad("stop-loss Kite would refuse", "p2.sl_pct", 0.2, "within 0.25% of LTP"),
    Bad("target not above stop", "p1.target_pct", -3.0, "must be greater than 0"),
    Bad("zero trigger", "p2.trigger_pct", 0, "must be greater than 0"),
    Bad("min day change above max", "min_day_change_pct", 6.0, "max_day_change_pct (5)"),
    Bad("window starts before the open", "entry_window.start", "09:00", "NSE session"),
    Bad("window ends after the close", "entry_window.end", "15:45", "NSE session"),
    Bad(
        "window start not before end",
        "entry_window.start",
        "15:00",
        "after start (15:00)",
        error_key="entry_window.end",
    ),
    Bad("bad time format", "entry_window.start", "9.30", '"HH:MM"'),
    Bad("unquoted time read as a number", "entry_window.end", 900, "quoted"),
    Bad("bad timeframe", "signal_timeframe", "10m", "'1m', '5m', '15m' or '1d'"),
    Bad("unknown key at top level", "max_postions", 90, "unknown key (not a parameter)"),
    Bad("unknown key nested", "p1.sl_pc", 2.5, "unknown key (not a parameter)"),
    Bad("string for a number", "total_capital", "240000", "valid number (got '240000')"),
    Bad("bool for a number", "max_daily_loss", True, "valid number"),
    Bad("missing key", "max_daily_loss", DELETE, "missing"),
    Bad("missing nested key", "charges.gst_pct", DELETE, "missing"),
    Bad("number where a mapping belongs", "gtt", 0.5, "mapping"),
    Bad("capital per position above total", "capital_per_position", 300_000, "total_capital"),
    Bad("order cap below capital per position", "max_order_value", 2_000, "capital_per_position"),
    Bad("universe name with a path", "universe", "../nifty50", "lowercase letters"),
    Bad("universe name with .csv", "universe", "nifty50.csv", "lowercase letters"),
    Bad("bad feed mode", "feed.mode", "tick", "'ltp', 'quote' or 'full'"),
    Bad("non-integer count", "max_new_ladders_per_scan", 2.5, "valid integer"),
    Bad("zero count", "max_positions", 0, f"{GE} 1"),
    Bad("more legs than Kite GTTs", "max_positions", 300, "less than or equal to 250"),
    Bad("zero seconds", "gtt.min_interval_s", 0, f"{GE} 1"),
    Bad("negative cooldown", "cooldown_minutes", -1, f"{GE} 0"),
    Bad("gtt buffer of 100%", "gtt.limit_buffer_pct", 100, "must be less than 100"),
    Bad("negative slippage", "paper.slippage_bps", -1, f"{GE} 0"),
    Bad("intraday charges missing", "charges.intraday", DELETE, "missing"),
    Bad("intraday charges not a mapping", "charges.intraday", 0.03, "mapping"),
    Bad("unknown intraday charge", "charges.intraday.dp_charge", 13.5, "unknown key"),
    Bad("intraday brokerage of 100%", "charges.intraday.brokerage_pct", 100, "less than 100"),
    Bad("intraday stt as text", "charges.intraday.stt_sell_pct", "0.025", "valid number"),
    *(
        Bad(f"missing intraday {key}", f"charges.intraday.{key}", DELETE, "missing")
        for key in INTRADAY_CHARGES
    ),
    *(
        Bad(f"negative intraday {key}", f"charges.intraday.{key}", -0.01, f"{GE} 0")
        for key in INTRADAY_CHARGES
    ),
]


@pytest.mark.parametrize("bad", BAD_FILES, ids=lambda bad: bad.name)
def test_a_bad_value_is_refused_naming_its_key(bad: Bad, tmp_path: Path):
    path = write_yaml(tmp_path, mutated(shipped_data(), bad.key, bad.value))
    errors = errors_of(path)
    assert len(errors) == 1, errors
    key_path, reason = errors[0].split(": ", 1)
    assert key_path == (bad.error_key or bad.key)
    assert bad.reason in reason


def test_a_list_where_a_mapping_belongs_is_refused():
    data = mutated(shipped_data(), "feed", [{"mode": "quote"}])
    with pytest.raises(ParamsError) as caught:
        parse_params(data)
    assert caught.value.errors == ["feed: must be a mapping of keys (got [{'mode': 'quote'}])"]


def test_every_problem_is_reported_at_once(tmp_path: Path):
    data = mutated(shipped_data(), "p1.sl_pct", 0)
    data = mutated(data, "signal_timeframe", "2h")
    data = mutated(data, "paper.fill", "best")
    errors = errors_of(write_yaml(tmp_path, data))
    assert [e.split(":")[0] for e in errors] == ["signal_timeframe", "p1.sl_pct", "paper.fill"]


def test_the_message_starts_with_the_file_and_lists_one_error_per_line(tmp_path: Path):
    path = write_yaml(tmp_path, mutated(shipped_data(), "p1.sl_pct", 0))
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    assert caught.value.path == str(path)
    assert str(caught.value) == f"{path} is invalid:\n  p1.sl_pct: must be greater than 0"


def test_check_params_file_returns_the_error_lines(tmp_path: Path):
    path = write_yaml(tmp_path, mutated(shipped_data(), "feed.mode", "full"))
    assert check_params_file(path) == []
    path = write_yaml(tmp_path, mutated(shipped_data(), "exit_timeout_s", 0))
    assert check_params_file(path) == ["exit_timeout_s: must be greater than or equal to 1"]


def test_parse_params_accepts_an_already_parsed_mapping():
    assert parse_params(shipped_data()).p3.sl_pct == 5.0


def test_parse_params_names_its_source():
    with pytest.raises(ParamsError) as caught:
        parse_params(mutated(shipped_data(), "universe", DELETE), source="upload")
    assert str(caught.value).startswith("upload is invalid:\n  universe: missing")


# --- files that are not a mapping of parameters at all ----------------------------------------


def test_a_duplicate_top_level_key_is_refused_with_its_line(tmp_path: Path):
    text = SHIPPED.read_text(encoding="utf-8") + "max_positions: 10\n"
    path = tmp_path / "param.yaml"
    path.write_text(text, encoding="utf-8")
    line = len(text.splitlines())
    assert errors_of(path) == [f"max_positions: duplicate key (line {line})"]


def test_a_duplicate_nested_key_is_refused_with_its_path_and_line(tmp_path: Path):
    path = tmp_path / "param.yaml"
    path.write_text("universe: nifty50\np1:\n  sl_pct: 2.5\n  target_pct: 5\n  sl_pct: 3\n")
    assert errors_of(path) == ["p1.sl_pct: duplicate key (line 5)"]


def test_a_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path):
    path = tmp_path / "param.yaml"
    path.write_text("universe: nifty50\nfeed:\n  mode: quote\nentry_window: {start: '09:30'\n")
    [error] = errors_of(path)
    assert error.startswith("line 5, column 1: YAML syntax error")


def test_a_bad_indent_is_reported_with_its_line(tmp_path: Path):
    path = tmp_path / "param.yaml"
    path.write_text("universe: nifty50\np1:\n  sl_pct: 2.5\n target_pct: 5\n")
    [error] = errors_of(path)
    assert error.startswith("line 4, ")


@pytest.mark.parametrize("text", ["", "\n", "# a comment\n"], ids=["empty", "blank", "comment"])
def test_an_empty_file_is_refused(text: str, tmp_path: Path):
    path = tmp_path / "param.yaml"
    path.write_text(text)
    assert errors_of(path) == ["top level: the file is empty (expected key: value parameters)"]


def test_a_list_at_the_top_level_is_refused(tmp_path: Path):
    path = tmp_path / "param.yaml"
    path.write_text("- universe: nifty50\n")
    assert errors_of(path) == ["top level: must be a mapping of parameters (got a list)"]


def test_a_missing_file_is_refused(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    assert errors_of(missing) == ["file not found"]
    assert check_params_file(missing) == ["file not found"]


def test_a_key_that_is_not_text_is_refused(tmp_path: Path):
    path = tmp_path / "param.yaml"
    path.write_text(SHIPPED.read_text(encoding="utf-8") + "1: one\n")
    assert errors_of(path) == ["1: a key must be text, not a number or null"]


def test_python_tags_are_not_constructed(tmp_path: Path):
    path = tmp_path / "param.yaml"
    path.write_text("universe: !!python/object/apply:os.system ['true']\n")
    [error] = errors_of(path)
    assert "line 1" in error
