"""R4 (APPC Art. 76): extending an appeal's term by the head's reasoned decision, "not more than up to two
months" in all (config/terms.toml [extension]); the citizen's notice is owed at once and its own clock is
watched by the deadline sweep (deadlines.py check_extension_notices).

Works inside the caller's transaction and never commits; every `now` is passed in.
"""

from __future__ import annotations

import calendar as months
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from adaldyk_bots import audit, lifecycle, notices, org
from adaldyk_bots.access import Viewer
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import Forbidden, Invalid
from adaldyk_bots.storage.db import require_id
from adaldyk_bots.storage.models import Appeal, AppealEvent
from adaldyk_bots.workflow import Workflow

__all__ = ["ExtensionRefused", "extend", "extension_cap", "max_extension_days", "may_extend"]

ALMATY = ZoneInfo("Asia/Almaty")


class ExtensionRefused(Invalid):
    """An extension the law or config/terms.toml does not allow (no reason, past the cap, no days)."""


def _day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def _event(
    s: Session, appeal: Appeal, kind: str, actor: str, detail: dict[str, object], now: datetime
) -> None:
    s.add(AppealEvent(appeal_id=require_id(appeal), kind=kind, actor=actor, detail=detail, created_at=now))


def _add_months(day: date, count: int) -> date:
    month = day.month - 1 + count
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, months.monthrange(year, month)[1]))


def extension_cap(workflow: Workflow, appeal: Appeal) -> date:
    """The last day an extended term may end on (R4, "not more than up to two months", read as a total:
    `cap_months` calendar months after the registration day, or after the first due day; terms.toml)."""
    rule = workflow.terms.extension
    base = (
        appeal.registered_at if rule.cap_from == "registration" else (appeal.original_due_at or appeal.due_at)
    )
    return _add_months(_day(base, workflow.calendar.tz), rule.cap_months)


def max_extension_days(workflow: Workflow, appeal: Appeal) -> int:
    """Working days the term may still be moved by (0: the cap is reached)."""
    cal = workflow.calendar
    cap, day, count = extension_cap(workflow, appeal), _day(appeal.due_at, cal.tz), 0
    while True:
        day = cal.next_working_day(day)
        if day > cap:
            return count
        count += 1


def may_extend(s: Session, viewer: Viewer, appeal: Appeal, *, now: datetime, tz: ZoneInfo = ALMATY) -> bool:
    """Only the head of the appeal's unit, or the deputy acting for the head today, or an admin (R4)."""
    if viewer.is_admin:
        return True
    if appeal.unit_id is None or not viewer.can_write:
        return False
    who = org.acting_head(s, appeal.unit_id, _day(now, tz))
    return who is not None and who.user_id == viewer.user_id


def extend(
    s: Session,
    workflow: Workflow,
    appeal: Appeal,
    *,
    viewer: Viewer,
    reason: str,
    working_days: int,
    now: datetime,
) -> AppealEvent:
    """R4: move the term by `working_days` on the head's reasoned decision. The status becomes extended
    (lifecycle.py), the first due date is kept in original_due_at, an overdue appeal whose new term is
    ahead is no longer overdue, and the citizen's notice is owed (notices.notify_citizen, kind
    "extension", one per extension) with its own clock (terms.toml [extension] notice_working_days)."""
    cal, rule = workflow.calendar, workflow.terms.extension
    if not may_extend(s, viewer, appeal, now=now, tz=cal.tz):
        raise Forbidden("only the head of the appeal's unit (or the deputy acting for the head) may extend")
    reason = reason.strip()
    if not reason:
        raise ExtensionRefused(
            "an extension is a reasoned decision: give the reason (the citizen is told it)"
        )
    if working_days < 1:
        raise ExtensionRefused("give the number of working days to add (1 or more)")
    Workflow._lock(s, appeal)
    status = AppealStatus(appeal.status)
    if status is not AppealStatus.EXTENDED:
        lifecycle.check(status.value, AppealStatus.EXTENDED.value)
    new_due = cal.due_at(appeal.due_at, working_days)
    cap = extension_cap(workflow, appeal)
    if _day(new_due, cal.tz) > cap:
        most = max_extension_days(workflow, appeal)
        raise ExtensionRefused(
            f"the term may end on {cap:%d.%m.%Y} at the latest ({rule.cap_months} months in all): "
            f"at most {most} working day(s) more"
        )
    old_due = appeal.due_at
    appeal.original_due_at = appeal.original_due_at or old_due
    appeal.due_at = new_due
    if appeal.overdue and new_due > now:
        appeal.overdue = False
    appeal.extensions += 1
    appeal.extension_notice_due_at = cal.due_at(now, rule.notice_working_days)
    appeal.status = AppealStatus.EXTENDED.value
    appeal.updated_at = appeal.last_activity_at = now
    s.add(appeal)
    if status is not AppealStatus.EXTENDED:
        _event(
            s,
            appeal,
            "status",
            viewer.actor,
            {"from": status.value, "to": appeal.status, "note": reason},
            now,
        )
    detail: dict[str, object] = {
        "n": appeal.extensions,
        "from_due": old_due.isoformat(),
        "to_due": new_due.isoformat(),
        "working_days": working_days,
        "reason": reason,
        "notice_due": appeal.extension_notice_due_at.isoformat(),
    }
    event = AppealEvent(
        appeal_id=require_id(appeal), kind="extension", actor=viewer.actor, detail=detail, created_at=now
    )
    s.add(event)
    s.flush()
    audit.record(s, actor=viewer.actor, action="appeal.extend", subject=appeal.number, detail=detail)
    text = workflow.texts.render(
        appeal.language, "extension", number=appeal.number, due=new_due, reason=reason
    )
    notices.notify_citizen(s, workflow, appeal, "extension", text=text, now=now, seq=appeal.extensions)
    return event
