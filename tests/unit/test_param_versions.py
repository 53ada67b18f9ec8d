"""Param versions: every loaded text kept with who, when and a unified diff; no duplicates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from Webapp.storage import param_versions, trading_models  # noqa: F401  (registers tables)
from Webapp.storage.db import make_session_factory, transaction
from Webapp.storage.models import Base

T0 = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
V1 = "p1:\n  sl_pct: 2.5  # below entry\n  target_pct: 5.0\n"
V2 = "p1:\n  sl_pct: 3.0  # below entry\n  target_pct: 5.0\n"


@pytest.fixture
def sessions():
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_the_first_version_is_1_and_its_diff_adds_the_whole_text(sessions):
    with transaction(sessions) as s:
        first = param_versions.record_version(s, V1, "admin", "initial load", now=T0)
    assert (first.version, first.actor, first.note, first.created_at) == (
        1,
        "admin",
        "initial load",
        T0,
    )
    assert first.diff.startswith("--- (none)\n+++ v1\n")
    assert "+  sl_pct: 2.5  # below entry\n" in first.diff


def test_a_changed_text_is_the_next_version_with_a_diff_against_the_previous(sessions):
    with transaction(sessions) as s:
        param_versions.record_version(s, V1, "admin", now=T0)
    with transaction(sessions) as s:
        second = param_versions.record_version(s, V2, "alice", "wider stop", now=T1)
    assert second.version == 2
    assert second.diff.splitlines() == [
        "--- v1",
        "+++ v2",
        "@@ -1,3 +1,3 @@",
        " p1:",
        "-  sl_pct: 2.5  # below entry",
        "+  sl_pct: 3.0  # below entry",
        "   target_pct: 5.0",
    ]
    with transaction(sessions) as s:
        listed = param_versions.versions(s)
        assert [(v.version, v.actor, v.yaml) for v in listed] == [
            (2, "alice", V2),
            (1, "admin", V1),
        ]
        assert param_versions.get_version(s, 1).yaml == V1


def test_reloading_the_same_text_adds_no_version(sessions):
    with transaction(sessions) as s:
        param_versions.record_version(s, V1, "admin", now=T0)
    with transaction(sessions) as s:
        again = param_versions.record_version(s, V1, "bob", "reload", now=T1)
    assert (again.version, again.actor) == (1, "admin")
    with transaction(sessions) as s:
        assert len(param_versions.versions(s)) == 1


def test_going_back_to_an_older_text_is_a_new_version(sessions):
    for text in (V1, V2, V1):
        with transaction(sessions) as s:
            param_versions.record_version(s, text, "admin", now=T0)
    with transaction(sessions) as s:
        latest = param_versions.latest_version(s)
    assert latest.version == 3
    assert "-  sl_pct: 3.0" in latest.diff and "+  sl_pct: 2.5" in latest.diff


def test_a_last_line_without_newline_still_gives_a_readable_diff(sessions):
    with transaction(sessions) as s:
        param_versions.record_version(s, "a: 1", "admin", now=T0)
        second = param_versions.record_version(s, "a: 2", "admin", now=T1)
    assert second.diff.splitlines()[-2:] == ["-a: 1", "+a: 2"]
