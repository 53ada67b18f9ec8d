"""The vendored front-end libraries are pinned, intact, and the only way pages load scripts."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDOR_DIR = ROOT / "static" / "vendor"
REFRESH_SCRIPT = VENDOR_DIR / "refresh.py"
TEMPLATES_DIR = ROOT / "templates"


def _load_refresh_module():
    spec = importlib.util.spec_from_file_location("ladder_vendor_refresh", REFRESH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


refresh = _load_refresh_module()


def _versions() -> dict[str, object]:
    return {entry.file: entry for entry in refresh.read_versions(VENDOR_DIR)}


def _run_check(vendor_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REFRESH_SCRIPT), "--check", "--vendor-dir", str(vendor_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def test_vendor_check_passes_for_the_files_in_the_repository():
    result = _run_check(VENDOR_DIR)
    assert result.returncode == 0, result.stderr
    assert refresh.check(VENDOR_DIR) == []


def test_every_file_listed_in_versions_exists_and_matches_its_sha256():
    entries = refresh.read_versions(VENDOR_DIR)
    assert entries, "VERSIONS lists no files"
    for entry in entries:
        path = VENDOR_DIR / entry.file
        assert path.is_file(), f"{entry.file} is listed in VERSIONS but missing"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256, entry.file


def test_versions_records_exactly_the_pinned_package_versions():
    versions = _versions()
    assert set(versions) == set(refresh.PINS)
    for file, (package, version, _member) in refresh.PINS.items():
        assert (versions[file].package, versions[file].version) == (package, version)


def test_htmx_is_a_2x_release():
    entry = _versions()["htmx.min.js"]
    assert entry.package == "htmx.org"
    assert _major(entry.version) == 2


def test_socket_io_client_is_a_4x_release():
    entry = _versions()["socket.io.min.js"]
    assert entry.package == "socket.io-client"
    assert _major(entry.version) == 4


def test_lightweight_charts_is_the_standalone_5x_build():
    entry = _versions()["lightweight-charts.standalone.production.js"]
    assert entry.package == "lightweight-charts"
    assert _major(entry.version) == 5
    head = (VENDOR_DIR / entry.file).read_text(encoding="utf-8")[:400]
    # The standalone build defines window.LightweightCharts; the .mjs builds do not.
    assert f"Lightweight Charts™ v{entry.version}" in head


def test_check_fails_and_names_a_file_whose_content_changed(tmp_path):
    for path in VENDOR_DIR.iterdir():
        if path.is_file():
            shutil.copy2(path, tmp_path / path.name)
    with (tmp_path / "htmx.min.js").open("ab") as fh:
        fh.write(b"\n// tampered\n")

    result = _run_check(tmp_path)

    assert result.returncode == 1
    assert "htmx.min.js" in result.stderr
    assert "socket.io.min.js" not in result.stderr


def test_check_fails_and_names_a_listed_file_missing_from_disk(tmp_path):
    shutil.copy2(VENDOR_DIR / "VERSIONS", tmp_path / "VERSIONS")
    shutil.copy2(VENDOR_DIR / "htmx.min.js", tmp_path / "htmx.min.js")

    result = _run_check(tmp_path)

    assert result.returncode == 1
    assert "socket.io.min.js" in result.stderr


def test_check_fails_when_a_pin_was_bumped_without_refreshing(tmp_path):
    for path in VENDOR_DIR.iterdir():
        if path.is_file():
            shutil.copy2(path, tmp_path / path.name)
    pins = dict(refresh.PINS)
    package, _version, member = pins["htmx.min.js"]
    pins["htmx.min.js"] = (package, "2.999.0", member)

    problems = refresh.check(tmp_path, pins)

    assert len(problems) == 1
    assert "htmx.min.js" in problems[0]


# <script ... src="https://..."> or <link ... href="//..."> (protocol-relative counts too)
_REMOTE_SOURCE = re.compile(
    r"""<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""",
    re.IGNORECASE,
)


def _remote_sources(text: str) -> list[str]:
    return [match.group(0) for match in _REMOTE_SOURCE.finditer(text)]


@pytest.mark.parametrize(
    ("html", "remote"),
    [
        ('<script src="https://cdn.example/htmx.org@2.0.0/htmx.min.js"></script>', True),
        ("<script defer src='http://cdn.example/x.js'></script>", True),
        ('<link rel="stylesheet" href="//cdn.example/x.css">', True),
        ("<LINK REL=stylesheet HREF=https://cdn.example/x.css>", True),
        ("<script src=\"{{ url_for('static', filename='vendor/htmx.min.js') }}\"></script>", False),
        ('<script src="/static/vendor/socket.io.min.js"></script>', False),
        ('<link rel="stylesheet" href="/static/css/app.css">', False),
        ('<a href="https://kite.zerodha.com/">Kite</a>', False),
    ],
)
def test_remote_source_detector_flags_cdn_tags_and_allows_local_ones(html, remote):
    assert bool(_remote_sources(html)) is remote


def test_no_template_loads_a_script_or_stylesheet_from_a_remote_url():
    offenders = []
    for path in sorted(TEMPLATES_DIR.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders.extend(f"{path.relative_to(ROOT)}: {tag}" for tag in _remote_sources(text))
    assert offenders == [], "templates must use static/vendor/, not CDN links"
