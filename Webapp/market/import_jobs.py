"""Background CSV import jobs, one at a time, with per-file progress for the data page."""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from Webapp.market.csv_import import CsvImportError, ImportOptions, ImportReport, import_csv

_log = logging.getLogger(__name__)

# A progress callback fires for every few rows; listeners hear at most this often.
_NOTIFY_INTERVAL_S = 0.25


class JobState(StrEnum):
    PENDING = "pending"  # accepted, thread not yet started
    RUNNING = "running"
    DONE = "done"  # every file imported
    FAILED = "failed"  # at least one file refused (the others may have imported)

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED)


class ImportBusyError(Exception):
    """An import is already running; only one runs at a time."""


@dataclass
class FileProgress:
    """One uploaded file of a job: where it is on disk, how far, and how it ended."""

    name: str  # as the user uploaded it; what the page shows
    path: Path  # the saved copy the importer reads
    state: JobState = JobState.PENDING
    rows_done: int = 0
    rows_total: int = 0
    report: ImportReport | None = None
    errors: list[str] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        report = self.report
        return {
            "name": self.name,
            "state": self.state.value,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "symbol": report.symbol if report else None,
            "timeframe": str(report.timeframe) if report else None,
            "rows": report.rows if report else None,
            "errors": list(self.errors),
        }


@dataclass
class ImportJob:
    """The files of one import submission and how far the import has got.

    Written only by the job's thread; readers get a consistent copy from
    `snapshot()`, which takes the job's lock.
    """

    id: str
    files: list[FileProgress]
    options: ImportOptions | None = None
    state: JobState = JobState.PENDING
    submitted_by: str = ""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    detail: str = ""  # an unexpected error that ended the job
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (done or failed); False on timeout."""
        return self._finished.wait(timeout)

    @property
    def rows_imported(self) -> int:
        return sum(f.report.rows for f in self.files if f.report is not None)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy for templates and the Socket.IO push."""
        with self._lock:
            return {
                "id": self.id,
                "state": self.state.value,
                "finished": self.state.finished,
                "submitted_by": self.submitted_by,
                "created_at": self.created_at,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "detail": self.detail,
                "rows_imported": self.rows_imported,
                "files": [f.snapshot() for f in self.files],
            }

    def _update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)


Importer = Callable[..., ImportReport]
Listener = Callable[[ImportJob], None]


class ImportRunner:
    """Runs one ImportJob at a time in a background thread and remembers the last one.

    `submit` refuses with ImportBusyError while a job runs. `listener(job)` is
    called from the job's thread on every state change and, at most every
    quarter second, on progress; it must be quick and must not raise (errors
    are logged). Uploaded copies live under `upload_root/<job id>/` and are
    deleted when the job ends.
    """

    def __init__(
        self,
        store: Any,
        upload_root: Path,
        listener: Listener | None = None,
        importer: Importer = import_csv,
    ) -> None:
        self.store = store
        self.upload_root = Path(upload_root)
        self.listener = listener
        self.importer = importer
        self._lock = threading.Lock()
        self._current: ImportJob | None = None
        # Uploads left by a process that died mid-import: nothing will read them.
        if self.upload_root.is_dir():
            for leftover in self.upload_root.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)

    @property
    def current(self) -> ImportJob | None:
        """The running job, else the last one (None before the first)."""
        return self._current

    @property
    def busy(self) -> bool:
        job = self._current
        return job is not None and not job.state.finished

    def new_upload_dir(self) -> tuple[str, Path]:
        """A fresh (job id, folder) to save uploads into before `submit`."""
        job_id = uuid.uuid4().hex[:12]
        folder = self.upload_root / job_id
        folder.mkdir(mode=0o700, parents=True)
        return job_id, folder

    def submit(
        self,
        job_id: str,
        files: Sequence[tuple[str, Path]],
        options: ImportOptions | None = None,
        submitted_by: str = "",
    ) -> ImportJob:
        """Start importing `files` ((shown name, saved path) pairs) in the background.

        Raises ImportBusyError while another job runs (the saved files are left
        for the caller to remove) and ValueError for an empty file list.
        """
        if not files:
            raise ValueError("no files to import")
        job = ImportJob(
            id=job_id,
            files=[FileProgress(name, Path(path)) for name, path in files],
            options=options,
            submitted_by=submitted_by,
        )
        with self._lock:
            if self.busy:
                raise ImportBusyError(
                    "an import is already running; wait for it to finish, then submit again"
                )
            self._current = job
        self._notify(job)
        threading.Thread(
            target=self._run, args=(job,), name=f"import-{job.id}", daemon=True
        ).start()
        return job

    def discard_upload_dir(self, job_id: str) -> None:
        shutil.rmtree(self.upload_root / job_id, ignore_errors=True)

    def _run(self, job: ImportJob) -> None:
        job._update(state=JobState.RUNNING, started_at=datetime.now(UTC))
        self._notify(job)
        any_failed = False
        try:
            for progress in job.files:
                any_failed |= not self._import_one(job, progress)
            final = JobState.FAILED if any_failed else JobState.DONE
            job._update(state=final, finished_at=datetime.now(UTC))
        except Exception as exc:  # a bug or a dead database: the job ends, the app does not
            _log.exception("import job %s stopped on an error", job.id)
            detail = f"{type(exc).__name__}: {exc}"
            with job._lock:
                for progress in job.files:
                    if not progress.state.finished:
                        progress.state = JobState.FAILED
                        progress.errors = progress.errors or [f"not imported: {detail}"]
                job.state = JobState.FAILED
                job.finished_at = datetime.now(UTC)
                job.detail = detail
        finally:
            self.discard_upload_dir(job.id)
            job._finished.set()
            self._notify(job)

    def _import_one(self, job: ImportJob, progress: FileProgress) -> bool:
        """Import one file whole or not at all; True when it was stored."""
        with job._lock:
            progress.state = JobState.RUNNING
        self._notify(job)
        last_notified = 0.0

        def on_progress(done: int, total: int) -> None:
            nonlocal last_notified
            with job._lock:
                progress.rows_done, progress.rows_total = done, total
            now = time.monotonic()
            if now - last_notified >= _NOTIFY_INTERVAL_S:
                last_notified = now
                self._notify(job)

        try:
            report = self.importer(self.store, progress.path, job.options, progress=on_progress)
        except CsvImportError as exc:
            with job._lock:
                progress.state = JobState.FAILED
                progress.errors = list(exc.errors) or [str(exc)]
            self._notify(job)
            return False
        with job._lock:
            progress.state = JobState.DONE
            progress.report = report
            progress.rows_done = progress.rows_total = max(progress.rows_total, report.rows)
        self._notify(job)
        return True

    def _notify(self, job: ImportJob) -> None:
        listener = self.listener
        if listener is None:
            return
        try:
            listener(job)
        except Exception:
            _log.exception("import listener failed for job %s", job.id)
