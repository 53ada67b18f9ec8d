"""Per-event timing of the engine thread, with the app DB's commits, SQL and GC inside each.

Not a benchmark itself (bench/run.py skips files starting with "_"). `EventRecorder` is
the threaded Engine's `event_timer` hook (`Engine.attach(..., event_timer=recorder)`),
and `EventRecorder.wrap_trader` times the same kinds of work on a single-threaded
trader (the inline driver) by wrapping its methods on the instance. For each piece of
work it keeps: the wall time, the thread's CPU time, and, from hooks on the app DB's
SQLAlchemy engine and on the garbage collector, how many commits ran inside it (each
one fsync'd: WAL, `synchronous=FULL`) and how long they took, how long the SQL
statements took, and how long the collector ran. All of them are counted per thread,
so a commit of the order-gateway thread (the PaperBroker writes its own rows) is never
charged to an engine event.

"Not counting the fsync" is an event's wall time minus the time spent inside the DBAPI
`commit()` calls it made: SQLite writes the WAL frames and fsyncs there (and runs an
automatic checkpoint when the WAL is full). Waiting for SQLite's write lock (the
gateway thread writing at the same moment) happens in the first write statement, so
it counts as SQL time, not as commit time.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import event

# A statement this slow is noted with its SQL (waiting for SQLite's write lock, mostly).
SLOW_SQL_NS = 5_000_000
# The order in which the kinds are printed; anything else after them.
KINDS = ("prices", "timer", "result", "order_update", "command", "view")
KIND_LABELS = {
    "prices": "ticks ready (prices)",
    "timer": "1 s timer",
    "result": "broker call's result",
    "order_update": "order update",
    "command": "command",
    "view": "view build + publish",
}


class Tally:
    """One thread's running totals (only that thread writes them)."""

    __slots__ = (
        "empty_commits",
        "commits",
        "commit_ns",
        "durations",
        "spans",
        "statements",
        "statement_ns",
        "statement_started",
        "slow",
        "gc_ns",
        "gc_started",
    )

    def __init__(self) -> None:
        self.commits = self.commit_ns = 0  # commits of a transaction that wrote: fsync'd
        self.empty_commits = 0  # commits with no write pending (a read's session): no I/O
        self.durations: list[int] = []  # of every commit, ns
        self.spans: list[tuple[int, int]] = []  # of every commit: (start, end) ns
        self.statements = self.statement_ns = self.statement_started = 0
        self.slow: list[tuple[int, str]] = []  # (ns, SQL) of the statements over SLOW_SQL_NS
        self.gc_ns = self.gc_started = 0


@dataclass
class Sample:
    """One piece of engine work."""

    wall_ns: int
    cpu_ns: int
    commits: int  # of transactions that wrote: each one fsync'd
    commit_ns: int
    statements: int
    statement_ns: int
    gc_ns: int
    detail: str  # results: the call answered ("ModifyGtt"); commands: their kind
    empty_commits: int = 0  # sessions that only read (no I/O)
    started_ns: int = 0  # perf_counter_ns at the start
    commit_spans: tuple[tuple[int, int], ...] = ()  # (start, end) ns of its commits
    full_gc_ns: int = 0  # full collections on any thread during it (set by `overlap_full_gcs`)
    # The part of `commit_ns` during which a full collection held the GIL (the commit had
    # ended but could not return): not the fsync, so counted back in `without_commit_ns`.
    commit_gc_ns: int = 0

    @property
    def without_commit_ns(self) -> int:
        return self.wall_ns - self.commit_ns + self.commit_gc_ns


@dataclass
class EventRecorder:
    """The engine's `event_timer` hook: times each piece of work and what ran inside it.

    `install(db_engine)` hooks the app DB (commit time and count, SQL statements) and the
    garbage collector; `uninstall()` removes the hooks. `profile_kinds`: a cProfile of
    every piece of work of those kinds (on the thread that does it), for `profile_report`.
    """

    profile_kinds: frozenset[str] = frozenset()
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    tallies: dict[int, Tally] = field(default_factory=dict)  # thread ident -> its totals
    names: dict[int, str] = field(default_factory=dict)  # thread ident -> thread name
    profiles: dict[str, cProfile.Profile] = field(default_factory=dict)
    # The collector's full passes (generation 2): (start ns, end ns, thread). The GIL is
    # held throughout, so one on any thread stops the engine thread too.
    full_gcs: list[tuple[int, int, str]] = field(default_factory=list)
    recording: bool = True
    _undo: list[Callable[[], None]] = field(default_factory=list)

    # --- hooks on the DB and the collector ----------------------------------------------

    def tally(self) -> Tally:
        ident = threading.get_ident()
        found = self.tallies.get(ident)
        if found is None:
            found = self.tallies[ident] = Tally()
            self.names[ident] = threading.current_thread().name
        return found

    def install(self, db_engine) -> None:
        dialect = db_engine.dialect
        do_commit = dialect.do_commit
        perf = time.perf_counter_ns

        def timed_commit(dbapi_connection) -> None:
            # sqlite3 opens a transaction before the first write only: a session that only
            # read commits nothing (no I/O, no fsync) and is counted apart.
            if not dbapi_connection.in_transaction:
                self.tally().empty_commits += 1
                do_commit(dbapi_connection)
                return
            started = perf()
            try:
                do_commit(dbapi_connection)
            finally:
                took = perf() - started
                t = self.tally()
                t.commits += 1
                t.commit_ns += took
                t.durations.append(took)
                t.spans.append((started, started + took))

        def before(*_args) -> None:
            self.tally().statement_started = perf()

        def after(_conn, _cursor, statement: str, *_args) -> None:
            t = self.tally()
            took = perf() - t.statement_started
            t.statements += 1
            t.statement_ns += took
            if took > SLOW_SQL_NS:
                t.slow.append((took, " ".join(statement.split())[:70]))

        def on_gc(phase: str, info: dict) -> None:
            t = self.tally()
            if phase == "start":
                t.gc_started = perf()
            elif t.gc_started:
                ended = perf()
                t.gc_ns += ended - t.gc_started
                if info.get("generation") == 2:
                    self.full_gcs.append((t.gc_started, ended, threading.current_thread().name))
                t.gc_started = 0

        dialect.do_commit = timed_commit
        event.listen(db_engine, "before_cursor_execute", before)
        event.listen(db_engine, "after_cursor_execute", after)
        gc.callbacks.append(on_gc)

        def undo() -> None:
            del dialect.do_commit  # back to the class's method
            event.remove(db_engine, "before_cursor_execute", before)
            event.remove(db_engine, "after_cursor_execute", after)
            gc.callbacks.remove(on_gc)

        self._undo.append(undo)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    # --- the hook ------------------------------------------------------------------------

    def __call__(self, kind: str, event_obj: object) -> Callable[[], None]:
        """Start timing one piece of work; the returned callable ends it."""
        t = self.tally()
        perf, cpu = time.perf_counter_ns, time.thread_time_ns
        commits, commit_ns, empty = t.commits, t.commit_ns, t.empty_commits
        first_span = len(t.spans)
        statements, statement_ns, gc_ns = t.statements, t.statement_ns, t.gc_ns
        profiler = None
        if kind in self.profile_kinds and self.recording:
            profiler = self.profiles.setdefault(kind, cProfile.Profile())
        cpu0 = cpu()
        wall0 = perf()
        if profiler is not None:
            profiler.enable()

        def done() -> None:
            if profiler is not None:
                profiler.disable()
            wall = perf() - wall0
            cpu_used = cpu() - cpu0
            if not self.recording:
                return
            sample = Sample(
                wall,
                cpu_used,
                t.commits - commits,
                t.commit_ns - commit_ns,
                t.statements - statements,
                t.statement_ns - statement_ns,
                t.gc_ns - gc_ns,
                detail_of(kind, event_obj),
                t.empty_commits - empty,
                wall0,
                tuple(t.spans[first_span:]),
            )
            self.samples.setdefault(kind, []).append(sample)

        return done

    def wrap_trader(self, trader) -> None:
        """Time a single-threaded trader's work as the engine hook would (on the instance)."""

        def timed(kind: str, method: Callable, with_event: bool) -> Callable:
            def wrapper(*args, **kwargs):
                done = self(kind, args[0] if with_event and args else None)
                try:
                    return method(*args, **kwargs)
                finally:
                    done()

            return wrapper

        trader.on_timer = timed("timer", trader.on_timer, False)
        trader.on_result = timed("result", trader.on_result, True)
        trader.on_order_update = timed("order_update", trader.on_order_update, True)
        trader.on_command = timed("command", trader.on_command, True)

    def overlap_full_gcs(self, samples: dict[str, list[Sample]]) -> None:
        """Set each sample's `full_gc_ns`: the full collections (any thread) inside it."""
        spans = sorted((a, b) for a, b, _ in self.full_gcs)
        for chosen in samples.values():
            for s in chosen:
                s.full_gc_ns = overlap(spans, s.started_ns, s.started_ns + s.wall_ns)
                s.commit_gc_ns = sum(overlap(spans, a, b) for a, b in s.commit_spans)

    def clear(self) -> None:
        self.samples.clear()
        self.profiles.clear()

    # --- totals --------------------------------------------------------------------------

    def slow_statements(self, thread_name: str) -> list[tuple[int, str]]:
        """(ns, SQL) of that thread's statements slower than SLOW_SQL_NS, slowest first."""
        found = [
            slow
            for ident, t in list(self.tallies.items())
            if self.names[ident] == thread_name
            for slow in t.slow
        ]
        return sorted(found, reverse=True)

    def commit_marks(self) -> dict[int, int]:
        """How many commits each thread has made so far (for `commits_since`)."""
        return {ident: len(t.durations) for ident, t in self.tallies.items()}

    def commits_since(self, marks: dict[int, int]) -> dict[str, list[int]]:
        """Thread name -> the durations (ns) of its commits since `commit_marks()`."""
        return {
            self.names[ident]: t.durations[marks.get(ident, 0) :]
            for ident, t in list(self.tallies.items())
            if len(t.durations) > marks.get(ident, 0)
        }


def overlap(spans: list[tuple[int, int]], start: int, end: int) -> int:
    """How much of [start, end) the spans cover (they do not overlap one another)."""
    return sum(min(end, b) - max(start, a) for a, b in spans if a < end and b > start)


def detail_of(kind: str, event_obj: object) -> str:
    if kind == "result":
        request = getattr(event_obj, "request", None)
        return type(request).__name__ if request is not None else ""
    if kind == "command":
        return str(getattr(getattr(event_obj, "kind", None), "value", ""))
    return ""


def pct(values: list[int] | list[float], p: float) -> float:
    """Nearest-rank percentile of unsorted values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, int(-(-len(ordered) * p // 100))) - 1]


def ordered_kinds(samples: dict[str, list[Sample]]) -> list[str]:
    return [k for k in KINDS if k in samples] + sorted(k for k in samples if k not in KINDS)


def ms(ns: float) -> str:
    return f"{ns / 1e6:,.2f}"


def event_table(samples: dict[str, list[Sample]], split_results: bool = True) -> list[str]:
    """Markdown: per kind of work, wall time and wall time without the commits, in ms."""
    lines = [
        "| engine work | count | p50 | p99 | max | without commit: p50 | p99 | max "
        "| commits | max in one | with > 1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _kind, label, chosen in rows_of(samples, split_results):
        wall = [s.wall_ns for s in chosen]
        bare = [s.without_commit_ns for s in chosen]
        commits = [s.commits for s in chosen]
        over = sum(c > 1 for c in commits)
        lines.append(
            f"| {label} | {len(chosen):,} | {ms(pct(wall, 50))} | {ms(pct(wall, 99))} "
            f"| {ms(max(wall))} | {ms(pct(bare, 50))} | {ms(pct(bare, 99))} | {ms(max(bare))} "
            f"| {sum(commits):,} | {max(commits)} | {over:,} |"
        )
    return lines


def where_table(samples: dict[str, list[Sample]], split_results: bool = True) -> list[str]:
    """Markdown: per kind of work, the mean of each part of its wall time (ms), and the mean
    number of SQL statements and commits in one."""
    lines = [
        "| engine work | wall | thread CPU | in commit | in SQL statements | in GC "
        "| rest (Python, GIL waits) | SQL statements | commits (fsync'd) | read-only sessions |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _kind, label, chosen in rows_of(samples, split_results):
        n = len(chosen)

        def mean(attr: str, chosen=chosen, n=n) -> float:
            return sum(getattr(s, attr) for s in chosen) / n

        wall, commit, sql, gcs = (
            mean("wall_ns"),
            mean("commit_ns"),
            mean("statement_ns"),
            mean("gc_ns"),
        )
        lines.append(
            f"| {label} | {ms(wall)} | {ms(mean('cpu_ns'))} | {ms(commit)} | {ms(sql)} "
            f"| {ms(gcs)} | {ms(wall - commit - sql - gcs)} | {mean('statements'):,.1f} "
            f"| {mean('commits'):,.2f} | {mean('empty_commits'):,.2f} |"
        )
    return lines


def slowest_table(samples: dict[str, list[Sample]], split_results: bool = True) -> list[str]:
    """Markdown: the slowest piece of work of each kind (by wall time), taken apart, in ms."""
    lines = [
        "| engine work: the slowest | which | wall | thread CPU | in commit "
        "| in SQL statements | in GC | rest | SQL statements | commits (fsync'd) "
        "| full GC, any thread |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, label, chosen in rows_of(samples, split_results):
        w = max(chosen, key=lambda s: s.wall_ns)
        which = next(i for i, s in enumerate(samples[kind], 1) if s is w)
        rest = w.wall_ns - w.commit_ns - w.statement_ns - w.gc_ns
        lines.append(
            f"| {label} | {which:,}. of {len(samples[kind]):,} | {ms(w.wall_ns)} | {ms(w.cpu_ns)} "
            f"| {ms(w.commit_ns)} | {ms(w.statement_ns)} | {ms(w.gc_ns)} | {ms(rest)} "
            f"| {w.statements:,} | {w.commits} | {ms(w.full_gc_ns)} |"
        )
    return lines


def rows_of(
    samples: dict[str, list[Sample]], split_results: bool
) -> list[tuple[str, str, list[Sample]]]:
    rows = []
    for kind in ordered_kinds(samples):
        chosen = samples[kind]
        rows.append((kind, KIND_LABELS.get(kind, kind), chosen))
        if kind in ("prices", "timer") and split_results:
            wrote = [s for s in chosen if s.commits]
            if wrote and len(wrote) < len(chosen):
                rows.append((kind, "… that wrote the DB", wrote))
                rows.append((kind, "… that did not", [s for s in chosen if not s.commits]))
        if kind in ("result", "command") and split_results:
            details = sorted({s.detail for s in chosen})
            if len(details) > 1:
                for detail in details:
                    some = [s for s in chosen if s.detail == detail]
                    rows.append((kind, f"… {detail or '?'}", some))
    return rows


def profile_report(profiler: cProfile.Profile, events: int, top: int = 20) -> str:
    """The top functions of a profile by cumulative time, in ms per event, then by own time."""
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():
        where = short_path(filename)
        label = f"{where}:{line}({name})" if line else name
        rows.append((cumulative, own, calls, label))
    out = io.StringIO()
    out.write(f"  per event, over {events:,} events (cProfile: times inflated by its overhead)\n")
    out.write(f"  {'cumulative ms':>13} {'own ms':>8} {'calls':>8}  function\n")
    for cumulative, own, calls, label in sorted(rows, reverse=True)[:top]:
        out.write(
            f"  {cumulative * 1e3 / events:13.3f} {own * 1e3 / events:8.3f} "
            f"{calls / events:8.1f}  {label}\n"
        )
    out.write(f"  by own time:\n  {'own ms':>13} {'cumul. ms':>8} {'calls':>8}  function\n")
    for cumulative, own, calls, label in sorted(rows, key=lambda r: r[1], reverse=True)[:12]:
        out.write(
            f"  {own * 1e3 / events:13.3f} {cumulative * 1e3 / events:8.3f} "
            f"{calls / events:8.1f}  {label}\n"
        )
    return out.getvalue()


def short_path(filename: str) -> str:
    for marker in ("/site-packages/", "/Webapp/", "/lib/python3"):
        if marker in filename:
            head = "Webapp/" if marker == "/Webapp/" else ""
            return head + filename.split(marker, 1)[1]
    return filename
