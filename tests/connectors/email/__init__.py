"""E-mail channel tests: a private Dovecot (tests/dovecot.py) for IMAP, fixtures built to real shapes."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MAILBOX_USER = "appeals@ecogeo.gov.kz"
# "@", "/" and "%" in the password: the URL must carry them percent-encoded (Mail.Ru application
# passwords are letters and digits, but a ministry's own server may allow any).
MAILBOX_PASSWORD = "app/pass@word%2026"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()
