"""Every version of param.yaml the engine loaded: the whole text, who, when, and a diff.

The diff is a unified diff of the YAML text, not a key-path diff of the parsed values:
the stored text keeps param.yaml's comments (which explain the numbers), a text diff
shows exactly what the editor changed, comments and layout included, and it needs no
parser, so a version always has a diff. A key-path view can still be computed later
from any two stored texts.
"""

from __future__ import annotations

import difflib
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from Webapp.storage.models import utc_now
from Webapp.storage.trading_models import ParamVersion


def latest_version(session: Session) -> ParamVersion | None:
    stmt = select(ParamVersion).order_by(ParamVersion.version.desc()).limit(1)
    return session.scalars(stmt).first()


def text_diff(old_text: str, new_text: str, old_label: str, new_label: str) -> str:
    """A unified diff of two YAML texts ('' when they are the same)."""
    lines = difflib.unified_diff(
        old_text.splitlines(keepends=True),
        new_text.splitlines(keepends=True),
        fromfile=old_label,
        tofile=new_label,
    )
    # A last line without a newline would run into the next diff line; close it.
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def record_version(
    session: Session,
    yaml_text: str,
    actor: str,
    note: str | None = None,
    *,
    now: datetime | None = None,
) -> ParamVersion:
    """Add the text as the next version, diffed against the last; the last if unchanged.

    The caller commits (like audit.record); version numbers are unique, so two writers
    racing for the same number fail on commit instead of both succeeding.
    """
    previous = latest_version(session)
    if previous is not None and previous.yaml == yaml_text:
        return previous
    number = 1 if previous is None else previous.version + 1
    old_text = "" if previous is None else previous.yaml
    old_label = "(none)" if previous is None else f"v{previous.version}"
    version = ParamVersion(
        version=number,
        created_at=now or utc_now(),
        actor=actor,
        yaml=yaml_text,
        diff=text_diff(old_text, yaml_text, old_label, f"v{number}"),
        note=note,
    )
    session.add(version)
    session.flush()
    return version


def versions(session: Session) -> list[ParamVersion]:
    """Every version, newest first."""
    return list(session.scalars(select(ParamVersion).order_by(ParamVersion.version.desc())))


def get_version(session: Session, number: int) -> ParamVersion | None:
    stmt = select(ParamVersion).where(ParamVersion.version == number)
    return session.scalars(stmt).one_or_none()
