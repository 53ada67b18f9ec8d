"""The strategy parameters in support_files/param.yaml: loaded, type-checked, sanity-checked."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

NSE_OPEN = time(9, 15)  # IST
NSE_CLOSE = time(15, 30)  # IST
# Kite refuses a GTT trigger within 0.25% of LTP: a stop or target closer than that
# to the fill price could never be protected at the broker.
KITE_MIN_TRIGGER_DISTANCE_PCT = 0.25
KITE_MAX_ACTIVE_GTTS = 250

Pct = Annotated[float, Field(ge=0, lt=100)]
StopPct = Annotated[float, Field(gt=0, lt=100)]
Rupees = Annotated[float, Field(ge=0)]
PositiveRupees = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]
Seconds = Annotated[int, Field(ge=1)]

# Unknown keys are refused at every level; strict: YAML "60" (a string) or true is
# never silently taken for a number.
_STRICT_FROZEN = ConfigDict(extra="forbid", frozen=True, strict=True)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_UNIVERSE_NAME = re.compile(r"^[a-z0-9_]+$")


def _refused(key: str, reason: str) -> PydanticCustomError:
    """An error from a model-level check, naming the key (inside that model) it is about."""
    return PydanticCustomError("param_check", reason, {"key": key})


def _check_kite_distance(pct: float) -> float:
    if pct <= KITE_MIN_TRIGGER_DISTANCE_PCT:
        raise PydanticCustomError(
            "param_check",
            "must be greater than 0.25: Kite refuses a "
            "GTT trigger within 0.25% of LTP, so no GTT could protect the "
            "leg",
        )
    return pct


class FeedParams(BaseModel):
    """How prices arrive from KiteTicker."""

    model_config = _STRICT_FROZEN
    mode: Literal["ltp", "quote", "full"]


class EntryWindow(BaseModel):
    """IST wall-clock times between which new ladders may open."""

    model_config = _STRICT_FROZEN
    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm_inside_session(cls, value: Any) -> time:
        if isinstance(value, int) and not isinstance(value, bool):
            raise PydanticCustomError(
                "param_check",
                'must be a quoted "HH:MM" string: YAML reads an unquoted 15:00 as the number 900',
            )
        match = _HHMM.match(value) if isinstance(value, str) else None
        if match is None:
            raise PydanticCustomError(
                "param_check",
                'must be a time "HH:MM", e.g. "09:30" (got {got})',
                {"got": repr(value)},
            )
        hhmm = time(int(match[1]), int(match[2]))
        if not NSE_OPEN <= hhmm <= NSE_CLOSE:
            raise PydanticCustomError("param_check", "must be inside the NSE session 09:15-15:30")
        return hhmm

    @model_validator(mode="after")
    def _start_before_end(self) -> EntryWindow:
        if self.start >= self.end:
            raise _refused("end", f"must be after start ({self.start:%H:%M})")
        return self


class P1Params(BaseModel):
    """The first leg: a trailing stop and a fixed target, both held by an OCO GTT."""

    model_config = _STRICT_FROZEN
    sl_pct: StopPct
    target_pct: Annotated[float, Field(gt=0)]

    @field_validator("sl_pct", "target_pct")
    @classmethod
    def _placeable_at_kite(cls, value: float) -> float:
        return _check_kite_distance(value)

    @model_validator(mode="after")
    def _target_above_stop(self) -> P1Params:
        # Implied by positive distances today; explicit so that a later change to how
        # either is expressed cannot produce an OCO GTT with its legs swapped.
        if 1 + self.target_pct / 100 <= 1 - self.sl_pct / 100:
            raise _refused(
                "target_pct",
                "the target (entry + target_pct%) must be above the stop (entry - sl_pct%)",
            )
        return self


class LegParams(BaseModel):
    """An added leg (P2 or P3): a runner with a trailing stop and no target."""

    model_config = _STRICT_FROZEN
    trigger_pct: Annotated[float, Field(gt=0, lt=100)]
    sl_pct: StopPct

    @field_validator("sl_pct")
    @classmethod
    def _placeable_at_kite(cls, value: float) -> float:
        return _check_kite_distance(value)


class GttParams(BaseModel):
    """How GTT sell orders are priced and how often they are modified."""

    model_config = _STRICT_FROZEN
    limit_buffer_pct: Pct
    min_step_pct: Pct
    min_interval_s: Seconds


class IntradayChargesParams(BaseModel):
    """The Zerodha equity-intraday (MIS) rates that differ from delivery."""

    model_config = _STRICT_FROZEN
    brokerage_pct: Pct  # of the order value, capped at brokerage_max
    brokerage_max: Rupees  # per executed order
    stt_sell_pct: Pct  # sell side only
    stamp_duty_pct: Pct  # buy side only


class ChargesParams(BaseModel):
    """Zerodha equity charges, for net P&L: delivery (CNC) at the top level, intraday below.

    The NSE transaction charge, the SEBI fee and GST are the same for both products,
    so intraday reads them from the top level rather than repeating them.
    """

    model_config = _STRICT_FROZEN
    brokerage: Rupees  # per executed order
    stt_pct: Pct
    nse_txn_pct: Pct
    sebi_per_crore: Rupees
    stamp_duty_pct: Pct
    gst_pct: Annotated[float, Field(ge=0, le=100)]
    dp_charge: Rupees  # per scrip per sell day, GST on top
    intraday: IntradayChargesParams


class PaperParams(BaseModel):
    """The paper broker's fill model."""

    model_config = _STRICT_FROZEN
    slippage_bps: Annotated[float, Field(ge=0, lt=10_000)]


class Params(BaseModel):
    """Every strategy parameter; each key is required, so the file is the one source of truth."""

    model_config = _STRICT_FROZEN
    universe: str
    feed: FeedParams
    scan_interval_s: Seconds
    entry_window: EntryWindow
    signal_timeframe: Literal["1m", "5m", "15m", "1d"]
    min_day_change_pct: Annotated[float, Field(ge=0)]
    max_day_change_pct: Annotated[float, Field(ge=0)]
    stale_after_s: Seconds
    max_new_ladders_per_scan: Count
    capital_per_position: PositiveRupees
    p1: P1Params
    p2: LegParams
    p3: LegParams
    cooldown_minutes: Annotated[int, Field(ge=0)]
    gtt: GttParams
    exit_timeout_s: Seconds
    max_positions: Annotated[int, Field(ge=1, le=KITE_MAX_ACTIVE_GTTS)]
    total_capital: PositiveRupees
    max_daily_loss: PositiveRupees
    max_order_value: PositiveRupees
    charges: ChargesParams
    paper: PaperParams

    @field_validator("universe")
    @classmethod
    def _universe_is_a_file_name(cls, value: str) -> str:
        if not _UNIVERSE_NAME.match(value):
            raise PydanticCustomError(
                "param_check",
                "must be the <name> of support_files/"
                "universe/<name>.csv: lowercase letters, digits and _ "
                "(got {got})",
                {"got": repr(value)},
            )
        return value

    @model_validator(mode="after")
    def _limits_consistent(self) -> Params:
        if self.min_day_change_pct > self.max_day_change_pct:
            raise _refused(
                "min_day_change_pct",
                f"must not exceed max_day_change_pct ({self.max_day_change_pct:g})",
            )
        if self.capital_per_position > self.total_capital:
            raise _refused(
                "capital_per_position",
                f"must not exceed total_capital "
                f"({self.total_capital:g}): no leg could ever be bought",
            )
        if self.max_order_value < self.capital_per_position:
            raise _refused(
                "max_order_value",
                f"must be at least capital_per_position "
                f"({self.capital_per_position:g}): every leg's order would be refused",
            )
        return self


class ParamsError(Exception):
    """A parameters file that cannot be used; errors are "<key path>: <reason>" strings."""

    def __init__(self, path: str | Path, errors: list[str]) -> None:
        self.path = str(path)
        self.errors = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path} is invalid:\n" + "\n".join(f"  {e}" for e in self.errors)


class UniqueKeySafeLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        duplicates = list(_duplicate_keys(node, ""))
        if duplicates:
            raise _DuplicateKeys(duplicates)
        return self.construct_document(node)


class _DuplicateKeys(Exception):
    """Raised by the loader with the "<key path>: duplicate key (line N)" strings."""


def _duplicate_keys(node: yaml.Node, path: str) -> Iterator[str]:
    if isinstance(node, yaml.MappingNode):
        seen: set[tuple[str, str]] = set()
        for key_node, value_node in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            key_path = f"{path}.{name}" if path else name
            identity = (key_node.tag, name)
            if isinstance(key_node, yaml.ScalarNode) and identity in seen:
                yield f"{key_path}: duplicate key (line {key_node.start_mark.line + 1})"
            seen.add(identity)
            yield from _duplicate_keys(value_node, key_path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}[{index}]")


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "top level"


# Errors whose reason already says enough without echoing the value back.
_NO_GOT = {
    "missing",
    "extra_forbidden",
    "param_check",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
}


def _reason(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (not a parameter)"
    if kind == "missing":
        return "missing (every parameter must be set in the file)"
    if kind == "invalid_key":
        return "a key must be text, not a number or null"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of keys (got {_short(error['input'])})"
    reason = error["msg"].replace("Input should be", "must be").replace("Input should", "must")
    if kind not in _NO_GOT:
        reason += f" (got {_short(error['input'])})"
    return reason


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_params(data: Mapping[str, Any], source: str = "<params>") -> Params:
    """Validate an already-parsed mapping; raise ParamsError listing every problem."""
    if not isinstance(data, Mapping):
        raise ParamsError(
            source, [f"top level: must be a mapping of parameters (got a {type(data).__name__})"]
        )
    try:
        return Params.model_validate(dict(data))
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            if error["type"] == "invalid_key":  # a YAML key like 1: or null:, not a list index
                loc = (*loc[:-1], str(loc[-1]))
            key = (error.get("ctx") or {}).get("key")
            if key:
                loc += (key,)
            errors.append(f"{_key_path(loc)}: {_reason(error)}")
        raise ParamsError(source, errors) from None


def load_params(path: str | Path) -> Params:
    """Read and validate a param.yaml; every failure is a ParamsError, never a traceback."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsError(path, [f"cannot read the file: {exc}"]) from None
    return parse_params_text(text, path)


def parse_params_text(text: str, path: str | Path = "<params>") -> Params:
    """Validate param.yaml text (a reload from the UI, or a file's content)."""
    try:
        loader = UniqueKeySafeLoader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except _DuplicateKeys as exc:
        raise ParamsError(path, exc.args[0]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise ParamsError(path, [f"{where}: YAML syntax error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ParamsError(path, ["YAML error: " + " ".join(str(exc).split())]) from None
    if data is None:
        raise ParamsError(path, ["top level: the file is empty (expected key: value parameters)"])
    return parse_params(data, str(path))


def check_params_file(path: str | Path) -> list[str]:
    """The problems of a parameters file as "<key path>: <reason>" lines; [] when it is valid."""
    try:
        load_params(path)
    except ParamsError as exc:
        return exc.errors
    return []
