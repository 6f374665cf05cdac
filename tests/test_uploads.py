"""Which files the web form takes (uploads.py: by their bytes, with a matching name), and the per-address
budgets of web/public_pages.py in Redis (shared by several web processes) and without it."""

from __future__ import annotations

import io
import zipfile

import pytest

from adaldyk_bots.uploads import safe_name, sniff, upload_id_of
from adaldyk_bots.web.public_pages import PublicLimiter
from tests.conftest import RedisForTest

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64
WINDOWS_EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 64


def _docx() -> bytes:
    # The parts every Office Open XML word-processing file has (ECMA-376 Part 2, the package).
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "mime"),
    [
        ("акт.pdf", PDF, "application/pdf"),
        ("photo.PNG", PNG, "image/png"),
        ("IMG_0001.jpeg", JPEG, "image/jpeg"),
        ("хат.docx", _docx(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("note.rtf", b"{\\rtf1\\ansi hello}", "application/rtf"),
    ],
)
def test_accepted_kinds_are_told_by_their_bytes(name: str, data: bytes, mime: str) -> None:
    found = sniff(name, data)
    assert (found.ok, found.mime_type) == (True, mime)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("invoice.pdf", ELF, "type"),
        ("scan.pdf", WINDOWS_EXE, "type"),
        ("readme.txt", b"plain words", "type"),
        ("photo.pdf", PNG, "mismatch"),
        ("document.exe", PDF, "mismatch"),
        ("archive.docx", b"PK\x03\x04" + b"\x00" * 40, "type"),
        ("empty.pdf", b"", "empty"),
    ],
)
def test_other_files_and_renamed_ones_are_refused_with_a_reason(name: str, data: bytes, reason: str) -> None:
    found = sniff(name, data)
    assert (found.ok, found.reason) == (False, reason)


def test_names_lose_folders_and_control_characters_and_ids_are_only_ours() -> None:
    assert safe_name("C:\\Users\\aigul\\Desktop\\акт.pdf") == "акт.pdf"
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("a\x00b\nc.pdf") == "abc.pdf"
    assert len(safe_name("x" * 500 + ".pdf")) == 200 and safe_name("x" * 500 + ".pdf").endswith(".pdf")
    assert upload_id_of("upload:42") == 42
    assert upload_id_of("AgACAgIAAxkBAAI") is None and upload_id_of("upload:-1") is None
    assert upload_id_of(None) is None


def test_the_budget_in_memory_refuses_past_the_limit_per_address() -> None:
    limiter = PublicLimiter(None)
    assert [limiter.hit("appeal", "203.0.113.5", 2) for _ in range(3)] == [True, True, False]
    assert limiter.hit("appeal", "203.0.113.6", 2)  # another address has its own
    assert limiter.hit("status", "203.0.113.5", 2)  # and look-ups their own


def test_two_web_processes_share_the_budget_in_redis(redis_budget: RedisForTest) -> None:
    first = PublicLimiter(redis_budget.url, key_prefix=redis_budget.prefix)
    second = PublicLimiter(redis_budget.url, key_prefix=redis_budget.prefix)
    assert first.hit("appeal", "198.51.100.7", 2)
    assert second.hit("appeal", "198.51.100.7", 2)
    assert not first.hit("appeal", "198.51.100.7", 2)
    assert not second.hit("appeal", "198.51.100.7", 2)


def test_an_unreachable_redis_lets_the_citizen_through() -> None:
    limiter = PublicLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert all(limiter.hit("appeal", "198.51.100.8", 1) for _ in range(3))
