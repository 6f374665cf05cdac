"""The notices the law owes a citizen (registration with the R2 receipt data, forwarding, extension, the
answer, the hearing): each exactly once per appeal and kind, through the outbox, in the appeal's language.

Exactly once comes from the outbox's UNIQUE key `notice:<kind>:<appeal>[:<n>]` (a second extension is
n = 2). A citizen who cannot be written to (phone, reception, no address given) gets a staff task
"call the citizen" with the same words instead: never a silent gap.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from adaldyk_bots import staff_work
from adaldyk_bots.storage.db import require_id
from adaldyk_bots.storage.models import Appeal, Conversation
from adaldyk_bots.workflow import Target, Workflow

__all__ = ["UNREACHABLE_CHANNELS", "notice_key", "notify_citizen"]

# Conversations no connector sends to: what is owed there is a person's task (staff_work.py).
UNREACHABLE_CHANNELS = staff_work.UNREACHABLE_CHANNELS


def notice_key(kind: str, appeal_id: int, seq: int | None = None) -> str:
    return f"notice:{kind}:{appeal_id}" + (f":{seq}" if seq else "")


def notify_citizen(
    s: Session,
    workflow: Workflow,
    appeal: Appeal,
    kind: str,
    *,
    text: str,
    now: datetime,
    seq: int | None = None,
) -> bool:
    """Owe the citizen `text` as the `kind` notice of `appeal`; False when it was owed already."""
    appeal_id = require_id(appeal)
    key = notice_key(kind, appeal_id, seq)
    conversation = s.get(Conversation, appeal.conversation_id)
    if conversation is None:
        return staff_work.add_task(
            s, key=f"call:{key}", appeal_id=appeal_id, kind="call_citizen", text=text, now=now
        )
    # Workflow.enqueue turns a notice for a phone or reception conversation into the same call task.
    target = Target.of(conversation)
    return workflow.enqueue(s, key=key, target=target, purpose=kind, appeal_id=appeal_id, text=text, now=now)
