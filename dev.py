#!/usr/bin/env python3
"""Set up and run Adaldyk with nothing but Python: `python3 dev.py run` or `python3 dev.py test`.

Creates .venv, installs the project with the pinned versions from constraints.txt (again only when
pyproject.toml or constraints.txt change), writes a .env with a fresh secret key on first run, and
then starts the service (SQLite under ./var/) or runs the test suite.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".adaldyk-installed"


def ensure_environment() -> None:
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("dev.py: installing dependencies (pinned in constraints.txt)", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-c", "constraints.txt", "-e", ".[test]"], check=True, cwd=ROOT)
    STAMP.write_text(wanted)


def ensure_dotenv() -> None:
    env_file = ROOT / ".env"
    if env_file.exists():
        return
    example = (ROOT / "config" / ".env.example").read_text(encoding="utf-8")
    key = secrets.token_urlsafe(48)
    env_file.write_text(
        example.replace("ADALDYK_SECRET_KEY=change-me", f"ADALDYK_SECRET_KEY={key}"), encoding="utf-8"
    )
    print("dev.py: wrote .env from config/.env.example with a new secret key", flush=True)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command not in ("run", "test", "setup"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    os.chdir(ROOT)
    ensure_environment()
    if command == "setup":
        return 0
    if command == "test":
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *argv[1:]])
    ensure_dotenv()
    return subprocess.call([str(BIN / "adaldyk"), "serve", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
