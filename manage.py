#!/usr/bin/env python3
"""The README's two commands: `python3 manage.py run` (the app) and `python3 manage.py test`.

Needs only Python 3.11+: it creates .venv, installs the pinned requirements
(only when they changed), and runs the app or the suite inside that venv.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def _requirements_digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv(requirements: str) -> None:
    """Create .venv if missing; install requirements when they changed since the last install."""
    if sys.version_info < (3, 11):  # noqa: UP036 (this file runs on any system python)
        sys.exit(f"Ladder needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        print(f"Creating {VENV} …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    files = [ROOT / "requirements.txt", ROOT / requirements]
    stamp = VENV / f".installed-{requirements}"
    wanted = _requirements_digest(files)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print(f"Installing {requirements} into .venv …", flush=True)
    subprocess.run(
        [
            str(PYTHON),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
            str(ROOT / requirements),
        ],
        check=True,
    )
    stamp.write_text(wanted)


def run_app(args: list[str]) -> int:
    ensure_venv("requirements.txt")
    # python -m Webapp applies migrations, creates the first admin, starts web + engine.
    return subprocess.call([str(PYTHON), "-m", "Webapp", *args], cwd=ROOT)


def run_tests(args: list[str]) -> int:
    ensure_venv("requirements-dev.txt")
    for check in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        print(f"$ {' '.join(check)}", flush=True)
        if subprocess.call([str(BIN / check[0]), *check[1:]], cwd=ROOT) != 0:
            return 1
    print("$ pytest", *args, flush=True)
    return subprocess.call([str(PYTHON), "-m", "pytest", *args], cwd=ROOT)


def main() -> int:
    commands = {"run": run_app, "test": run_tests}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print("usage: python3 manage.py run|test [extra arguments]", file=sys.stderr)
        return 2
    try:
        return commands[sys.argv[1]](sys.argv[2:])
    except KeyboardInterrupt:
        return 130
    except subprocess.CalledProcessError as exc:
        print(f"failed: {' '.join(map(str, exc.cmd))} (exit {exc.returncode})", file=sys.stderr)
        return exc.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
