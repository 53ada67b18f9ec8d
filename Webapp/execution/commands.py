"""Controls the engine accepts on its queue (start, stop, pause, resume, emergency, reload).

A command is handled on the engine thread between two events, like everything else
that changes strategy state; the caller may wait for its outcome. The engine writes
every command and its outcome to the audit log (who, what, the result).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class CommandKind(StrEnum):
    START = "start"  # reconcile with the broker, then trade
    STOP = "stop"  # no new orders of any kind; GTTs stay at the broker and protect the legs
    PAUSE = "pause"  # no new ladders or legs; stops keep trailing, exits still happen
    RESUME = "resume"  # entries allowed again (undoes pause)
    EMERGENCY = "emergency"  # cancel every GTT, sell every open leg at market, stop
    RELOAD = "reload"  # validate and apply new parameters; keep the old ones if invalid


@dataclass(frozen=True)
class CommandResult:
    ok: bool
    message: str


@dataclass(eq=False)
class Command:
    """One control from `actor` (a username, or "system"); RELOAD may carry the YAML text.

    `params_text` None on RELOAD means: read param.yaml from disk again.
    """

    kind: CommandKind
    actor: str
    params_text: str | None = None
    note: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _result: CommandResult | None = field(default=None, repr=False)

    def finish(self, ok: bool, message: str) -> CommandResult:
        """Called once by the engine thread with the outcome."""
        self._result = CommandResult(ok, message)
        self._done.set()
        return self._result

    def wait(self, timeout: float | None = None) -> CommandResult | None:
        """The outcome once the engine handled the command; None if `timeout` passed first."""
        if not self._done.wait(timeout):
            return None
        return self._result
