"""Fetch the pinned front-end libraries into static/vendor/ and record them in VERSIONS.

The browser UI never loads scripts from a CDN: every third-party file it serves
lives next to this script, pinned to an exact npm release and recorded in
``VERSIONS`` as ``<file> <npm package>@<version> sha256=<hex>``.

Refresh (needs the ``npm`` client on PATH and access to its registry)::

    python static/vendor/refresh.py

For each pin this runs ``npm pack <package>@<version> --json`` into a temporary
directory, checks the tarball's sha512 against the integrity npm reports for the
pack and against the registry's published ``dist.integrity``, extracts the one
file we serve and writes it here. ``VERSIONS`` is then rewritten.

Verify without network (the test suite does this)::

    python static/vendor/refresh.py --check

To add or bump a library, edit one line in ``PINS`` and run the refresh.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

# file written into static/vendor/ -> (npm package, exact version, path inside the package)
PINS: dict[str, tuple[str, str, str]] = {
    "htmx.min.js": ("htmx.org", "2.0.11", "dist/htmx.min.js"),
    "socket.io.min.js": ("socket.io-client", "4.8.4", "dist/socket.io.min.js"),
    "lightweight-charts.standalone.production.js": (
        "lightweight-charts",
        "5.2.1",
        "dist/lightweight-charts.standalone.production.js",
    ),
}

VENDOR_DIR = Path(__file__).resolve().parent
VERSIONS_NAME = "VERSIONS"


class RefreshError(Exception):
    """A refresh step failed; the message says which and why."""


@dataclass(frozen=True)
class Entry:
    """One line of VERSIONS."""

    file: str
    package: str
    version: str
    sha256: str

    def line(self) -> str:
        return f"{self.file} {self.package}@{self.version} sha256={self.sha256}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_versions(text: str) -> list[Entry]:
    """Parse VERSIONS text; blank lines and ``#`` comments are ignored."""
    entries = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("sha256=") or "@" not in parts[1][1:]:
            raise RefreshError(f"{VERSIONS_NAME} line {lineno} is malformed: {raw!r}")
        # rpartition so scoped packages (@scope/name@1.2.3) split correctly
        package, _, version = parts[1].rpartition("@")
        entries.append(Entry(parts[0], package, version, parts[2].removeprefix("sha256=")))
    return entries


def read_versions(vendor_dir: Path = VENDOR_DIR) -> list[Entry]:
    path = vendor_dir / VERSIONS_NAME
    if not path.is_file():
        raise RefreshError(f"{path} is missing; run {Path(__file__).name} to create it")
    return parse_versions(path.read_text(encoding="utf-8"))


def check(vendor_dir: Path = VENDOR_DIR, pins: dict | None = None) -> list[str]:
    """Return a list of problems (empty when every vendored file is intact). No network."""
    pins = PINS if pins is None else pins
    try:
        entries = read_versions(vendor_dir)
    except RefreshError as exc:
        return [str(exc)]
    problems = []
    listed = {}
    for entry in entries:
        listed[entry.file] = entry
        path = vendor_dir / entry.file
        if not path.is_file():
            problems.append(f"{entry.file}: listed in {VERSIONS_NAME} but missing on disk")
            continue
        actual = sha256_of(path)
        if actual != entry.sha256:
            problems.append(
                f"{entry.file}: sha256 mismatch (VERSIONS {entry.sha256}, on disk {actual})"
            )
    for file, (package, version, _member) in pins.items():
        entry = listed.get(file)
        if entry is None:
            problems.append(f"{file}: pinned to {package}@{version} but not in {VERSIONS_NAME}")
        elif (entry.package, entry.version) != (package, version):
            problems.append(
                f"{file}: {VERSIONS_NAME} has {entry.package}@{entry.version} but the pin is "
                f"{package}@{version}; run {Path(__file__).name}"
            )
    return problems


def find_npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise RefreshError(
            "npm is not on PATH; install Node.js/npm (e.g. apt-get install npm) and retry"
        )
    return npm


def run_npm(npm: str, args: list[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [npm, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300
        )
    except subprocess.TimeoutExpired as exc:
        raise RefreshError(f"`npm {' '.join(args)}` timed out") from exc
    if proc.returncode != 0:
        raise RefreshError(
            f"`npm {' '.join(args)}` failed (exit {proc.returncode}):\n{proc.stderr.strip()}"
        )
    return proc.stdout


def load_json(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # tolerate stray lines before the JSON document
        for opener in ("[", "{", '"'):
            start = text.find(opener)
            if start != -1:
                try:
                    return json.loads(text[start:])
                except json.JSONDecodeError:
                    continue
    raise RefreshError(f"could not parse JSON from {what}: {text[:200]!r}")


def sha512_integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def sha512_values(integrity: str) -> set[str]:
    """The sha512 entries of an SRI string (it may list several algorithms)."""
    return {item for item in integrity.split() if item.startswith("sha512-")}


def fetch(npm: str, file: str, package: str, version: str, member: str, workdir: Path) -> bytes:
    spec = f"{package}@{version}"
    packed = load_json(
        run_npm(npm, ["pack", spec, "--json", "--pack-destination", str(workdir)], workdir),
        f"npm pack {spec}",
    )
    if not isinstance(packed, list) or len(packed) != 1:
        raise RefreshError(f"npm pack {spec}: expected one package in its JSON, got {packed!r}")
    info = packed[0]
    if info.get("name") != package or info.get("version") != version:
        raise RefreshError(
            f"npm pack {spec} returned {info.get('name')}@{info.get('version')} instead"
        )
    tarball = workdir / Path(info["filename"]).name
    if not tarball.is_file():
        raise RefreshError(f"npm pack {spec}: {tarball.name} was not written")

    actual = sha512_integrity(tarball)
    reported = sha512_values(info.get("integrity", ""))
    if not reported:
        raise RefreshError(f"npm pack {spec} reported no sha512 integrity")
    if actual not in reported:
        raise RefreshError(f"{tarball.name}: sha512 {actual} does not match npm pack's {reported}")
    published = load_json(
        run_npm(npm, ["view", spec, "dist.integrity", "--json"], workdir),
        f"npm view {spec} dist.integrity",
    )
    if isinstance(published, str) and actual not in sha512_values(published):
        raise RefreshError(
            f"{tarball.name}: sha512 {actual} does not match the registry's {published}"
        )

    name = f"package/{member}"
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            info_member = tar.getmember(name)
        except KeyError as exc:
            raise RefreshError(f"{spec} has no {member} (wanted for {file})") from exc
        if not info_member.isfile():
            raise RefreshError(f"{spec}: {member} is not a regular file")
        fh = tar.extractfile(info_member)
        if fh is None:
            raise RefreshError(f"{spec}: could not read {member}")
        return fh.read()


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refresh(vendor_dir: Path = VENDOR_DIR, pins: dict | None = None) -> list[Entry]:
    """Fetch every pin, write the files and rewrite VERSIONS. Needs npm and its registry."""
    pins = PINS if pins is None else pins
    npm = find_npm()
    fetched: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="ladder-vendor-") as tmp:
        for file, (package, version, member) in pins.items():
            workdir = Path(tmp) / file
            workdir.mkdir()
            print(f"fetching {package}@{version} ({member}) -> {file}")
            fetched[file] = fetch(npm, file, package, version, member, workdir)
    # write only after every download verified, so a failure leaves the old set intact
    entries = []
    for file in sorted(fetched):
        package, version, _member = pins[file]
        path = vendor_dir / file
        write_atomic(path, fetched[file])
        entries.append(Entry(file, package, version, sha256_of(path)))
    text = "".join(entry.line() + "\n" for entry in entries)
    write_atomic(vendor_dir / VERSIONS_NAME, text.encode("utf-8"))
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify the vendored files against VERSIONS and the pins (no network)",
    )
    parser.add_argument(
        "--vendor-dir",
        type=Path,
        default=VENDOR_DIR,
        help="directory holding the vendored files and VERSIONS (default: this script's)",
    )
    args = parser.parse_args(argv)

    if args.check:
        problems = check(args.vendor_dir)
        for problem in problems:
            print(f"vendor check failed: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"vendor check ok: {len(read_versions(args.vendor_dir))} file(s) match VERSIONS")
        return 0

    try:
        entries = refresh(args.vendor_dir)
    except RefreshError as exc:
        print(f"refresh failed: {exc}", file=sys.stderr)
        return 1
    for entry in entries:
        print(entry.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
