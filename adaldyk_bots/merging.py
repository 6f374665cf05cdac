"""A duplicate appeal merged into the one that carries on (status `merged`, `merged_into_id`).

The duplicate keeps its messages and history; the surviving appeal's history and page list it. Reopening
a merged appeal (appeal_actions.change_status, with its reason) makes it stand on its own again.
Works inside the caller's transaction and never commits.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from adaldyk_bots import audit, data_collection
from adaldyk_bots.appeal_actions import ReasonRequired, clean
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import Conflict
from adaldyk_bots.storage.db import require_id, utcnow
from adaldyk_bots.storage.models import Appeal, AppealEvent
from adaldyk_bots.workflow import Workflow

__all__ = ["SelfMerge", "merge", "merged_into"]


class SelfMerge(Conflict):
    """An appeal named as its own duplicate."""


def merged_into(s: Session, appeal: Appeal) -> list[Appeal]:
    """The duplicates merged into `appeal`, oldest first."""
    return list(
        s.exec(select(Appeal).where(Appeal.merged_into_id == require_id(appeal)).order_by(col(Appeal.id)))
    )


def merge(
    workflow: Workflow, s: Session, duplicate: Appeal, survivor: Appeal, *, reason: str, actor: str
) -> AppealEvent:
    """Merge `duplicate` into `survivor`; returns the duplicate's status event. The caller has opened both
    with `access.visible_appeal` (a merge may not reach an appeal its author cannot see)."""
    reason = clean(reason)
    if not reason:
        raise ReasonRequired("a merge needs a reason: the citizen is told why")
    if require_id(duplicate) == require_id(survivor):
        raise SelfMerge("an appeal cannot be merged into itself")
    if survivor.status == AppealStatus.MERGED or survivor.merged_into_id is not None:
        raise Conflict(f"{survivor.number} is itself merged into another appeal: merge into that one")
    now = utcnow()
    request = data_collection.open_request_of(s, duplicate)
    if request is not None:
        data_collection.cancel(s, request, reason="staff", now=now)
    event = workflow.change_status(
        s, duplicate, AppealStatus.MERGED, actor=actor, note=reason, detail={"into": survivor.number}
    )
    duplicate.merged_into_id = survivor.id
    s.add(duplicate)
    facts: dict[str, object] = {"appeal": duplicate.number, "reason": reason}
    s.add(
        AppealEvent(
            appeal_id=require_id(survivor), kind="merged_in", actor=actor, detail=facts, created_at=now
        )
    )
    survivor.updated_at = survivor.last_activity_at = now
    s.add(survivor)
    audit.record(s, actor=actor, action="appeal.merge", subject=survivor.number, detail=facts)
    return event
