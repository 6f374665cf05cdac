"""The seams stay where they are: the core never imports a connector, the core has no import circles
(import-linter contracts in pyproject.toml), and connectors reach intake only through the ports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "adaldyk_bots"
CONNECTORS = ROOT / "connectors"


def _sources(package: Path) -> list[Path]:
    return [p for p in package.rglob("*.py") if "migrations" not in p.parts]


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_package_directory_is_a_regular_package() -> None:
    # import-linter (grimp) does not see a directory without __init__.py, so its modules would escape
    # every contract; adaldyk_bots/web once did.
    for package in (CORE, CONNECTORS):
        for directory in {p.parent for p in _sources(package)}:
            assert (directory / "__init__.py").exists(), f"{directory.relative_to(ROOT)} has no __init__.py"


def test_no_core_module_names_a_connector() -> None:
    # Also catches what a static import graph cannot: importlib.import_module("connectors.x") and
    # string-based loading outside the registry's entry points.
    pattern = re.compile(r"^\s*(from|import)\s+connectors\b|[\"']connectors\.", re.MULTILINE)
    offenders = {str(p.relative_to(ROOT)) for p in _sources(CORE) if pattern.search(p.read_text("utf-8"))}
    assert offenders == set()


def test_connectors_reach_intake_through_the_port_only() -> None:
    # A connector types against IntakeSink; the concrete Intake (and its database) is the core's.
    pattern = re.compile(r"adaldyk_bots\.intake\b|adaldyk_bots\.runtime\b|adaldyk_bots\.web\b")
    offenders = [
        str(p.relative_to(ROOT)) for p in _sources(CONNECTORS) if pattern.search(p.read_text("utf-8"))
    ]
    assert offenders == []


def test_the_ports_name_no_concrete_intake() -> None:
    ports = (CORE / "ports.py").read_text("utf-8")
    assert not re.search(r"adaldyk_bots\.intake\b|\bIntake\b", ports)
