"""Citizens' files from the web form: which kinds are taken (by their bytes, not their names), and their
rows in the database (`upload`), referenced from a message's attachments as file_id "upload:<id>".

A file is taken when its first bytes are one of the allowed kinds (the `filetype` library reads the magic
numbers) AND its name ends as that kind's does: a program renamed to .pdf fails the first test, a photo
named .pdf the second. Refusals carry a stable reason code (`empty`, `type`, `mismatch`) that the form
turns into words in the citizen's language.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

import filetype
from sqlmodel import Session

from adaldyk_bots.storage.db import require_id
from adaldyk_bots.storage.models import Upload

__all__ = ["ALLOWED", "FILE_ID_PREFIX", "Sniffed", "attachment_of", "sniff", "store_upload", "upload_id_of"]

FILE_ID_PREFIX = "upload:"

# Sniffed MIME type -> the name endings that kind may have. Documents and pictures a citizen attaches
# to an appeal (a scan, a photo of the place, a letter); nothing that runs.
ALLOWED: dict[str, tuple[str, ...]] = {
    "application/pdf": (".pdf",),
    "image/jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "image/png": (".png",),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "image/heic": (".heic", ".heif"),
    "application/msword": (".doc",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (".docx",),
    "application/vnd.oasis.opendocument.text": (".odt",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (".xlsx",),
    "application/vnd.ms-excel": (".xls",),
    "application/rtf": (".rtf",),
}


@dataclass(frozen=True)
class Sniffed:
    ok: bool
    mime_type: str = ""
    reason: str | None = None  # empty | type | mismatch


def sniff(name: str, data: bytes) -> Sniffed:
    if not data:
        return Sniffed(False, reason="empty")
    kind = filetype.guess(data)
    mime = str(kind.mime) if kind is not None else ""
    # filetype names the old Office formats by their container; an .xls and a .doc look the same to it.
    if mime in ("application/x-ole-storage", "application/vnd.ms-excel", "application/msword"):
        mime = "application/vnd.ms-excel" if name.lower().endswith(".xls") else "application/msword"
    if mime not in ALLOWED:
        return Sniffed(False, mime, "type")
    if PurePath(safe_name(name).lower()).suffix not in ALLOWED[mime]:
        return Sniffed(False, mime, "mismatch")
    return Sniffed(True, mime)


def store_upload(s: Session, *, name: str, mime_type: str, data: bytes, now: datetime) -> Upload:
    """A row for one accepted file (no appeal yet: the caller sets appeal_id in the same transaction)."""
    row = Upload(
        name=safe_name(name),
        mime_type=mime_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        created_at=now,
    )
    s.add(row)
    s.flush()
    return row


def attachment_of(row: Upload) -> dict[str, Any]:
    """The message's attachment entry, shaped as every channel's (kind, file_id, name, mime_type, size)."""
    kind = "photo" if row.mime_type.startswith("image/") else "document"
    return {
        "kind": kind,
        "file_id": f"{FILE_ID_PREFIX}{require_id(row)}",
        "name": row.name,
        "mime_type": row.mime_type,
        "size": row.size,
    }


def upload_id_of(file_id: object) -> int | None:
    """The upload row of an attachment's file_id ("upload:<id>"), or None for a platform's file."""
    if not isinstance(file_id, str) or not file_id.startswith(FILE_ID_PREFIX):
        return None
    rest = file_id[len(FILE_ID_PREFIX) :]
    return int(rest) if rest.isdigit() and len(rest) < 19 else None


def safe_name(name: str) -> str:
    """The file's own name without any folder a browser sent, control characters or excess length."""
    base = PurePath(name.replace("\\", "/")).name
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip() or "file"
    if len(cleaned) > 200:
        suffix = PurePath(cleaned).suffix[:20]
        cleaned = cleaned[: 200 - len(suffix)] + suffix
    return cleaned
