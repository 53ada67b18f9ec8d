"""Writing and reading the audit log."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from Webapp.storage.models import AuditEntry


def record(
    session: Session, actor: str, action: str, client_addr: str | None = None, **detail
) -> AuditEntry:
    """Add one audit entry to the session's transaction (the caller commits)."""
    entry = AuditEntry(actor=actor, action=action, detail=detail, client_addr=client_addr)
    session.add(entry)
    return entry


def recent(session: Session, limit: int = 100) -> list[AuditEntry]:
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    return list(session.scalars(stmt))
