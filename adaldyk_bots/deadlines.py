"""Deadlines and accountability: the clocks of an appeal after registration and what happens when they run.

    escalate(s, appeal, reason=, key=, now=)   to the head's superior (its acting head that day) and to
                                               the project office, once per key (overdue, "not resolved")
    (the extension itself, R4, is extension.py; its notice's clock is swept here)
    Sweeps (one sweep_round a minute, under the supervisor; runtime.py):
      forwarding   R5: not forwarded or given to a unit within 3 working days -> the project office
      reminders    the responsible head (or the acting deputy) at T-3 and T-1 working days
      overdue      R7: from the minute due_at passes; escalates (workflow.mark_overdue does the marking)
      extension    the citizen's extension notice not delivered in time -> the project office
      digest       each head, once a working day at the configured hour: due, overdue, awaiting approval

Every number comes from config/terms.toml (terms.py). Exactly once, with any number of workers: each thing
a sweep does first takes a mark (staff_alerts.claim, a UNIQUE key); the notices themselves have UNIQUE
keys too (staff_work.py). Every function takes `now` and works inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import String, cast, exists, literal, update
from sqlmodel import Session, col, select

from adaldyk_bots import audit, notices, org, staff_work
from adaldyk_bots.i18n import N_
from adaldyk_bots.staff_alerts import Alerts, claim, render_for
from adaldyk_bots.storage.db import require_id
from adaldyk_bots.storage.inbound import OPEN_STATUSES
from adaldyk_bots.storage.models import (
    Appeal,
    AppealEvent,
    DeadlineMark,
    OutboxItem,
    StaffTask,
    StaffUser,
    Unit,
)
from adaldyk_bots.workflow import Workflow

__all__ = ["ESCALATION_REASONS", "Approvals", "Deadlines", "SweepReport", "escalate", "no_approvals"]

ALMATY = ZoneInfo("Asia/Almaty")  # one time zone for Kazakhstan since 2024 (kz-appeals-law.md)
BATCH = 500  # rows one sweep step takes per round: a backlog is worked off over a few minutes
DIGEST_LIST = 20  # numbers a digest lists per section; the count says how many in all

ESCALATION = N_("Appeal %(number)s is raised to you: %(reason)s.")
ESCALATION_REASONS = {
    "overdue": N_("its term ended and it is not answered (overdue)"),
    "not_resolved": N_("the citizen says the problem is not resolved"),
}
REMINDER = N_("Appeal %(number)s is due on %(due)s: %(left)s working day(s) left.")
OVERDUE = N_("Appeal %(number)s is overdue: its term ended on %(due)s.")
FORWARDING_LATE = N_(
    "Appeal %(number)s has not been forwarded or given to a unit within %(days)s working days (due %(due)s)."
)
EXTENSION_NOTICE_LATE = N_(
    "The citizen has not been told of the extension of appeal %(number)s within %(days)s working days."
)
DIGEST_TITLE = N_("Your appeals today, %(day)s")
DIGEST_DUE = N_("Due within %(days)s working days: %(count)s")
DIGEST_OVERDUE = N_("Overdue: %(count)s")
DIGEST_APPROVAL = N_("Waiting for your approval: %(count)s")
DIGEST_LINE = N_("%(number)s, due %(due)s")
DIGEST_HEADLESS = N_(
    "It also covers units with no head (or acting head) with a workspace account: %(units)s."
)

# The hook for answers waiting for a head's approval (four-eyes answers, issue 10): appeals of these units.
Approvals = Callable[[Session, Sequence[int]], Sequence[Appeal]]


def no_approvals(s: Session, unit_ids: Sequence[int]) -> Sequence[Appeal]:
    """Until four-eyes answers exist, nothing waits for approval."""
    return ()


def _day(now: datetime, tz: ZoneInfo) -> date:
    return now.astimezone(tz).date()


def _show(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%d.%m.%Y")


def _project_office(s: Session) -> int | None:
    office = org.unit_by_code(s, org.PROJECT_OFFICE)
    return office.id if office is not None else None


def _event(
    s: Session, appeal: Appeal, kind: str, actor: str, detail: dict[str, object], now: datetime
) -> None:
    s.add(AppealEvent(appeal_id=require_id(appeal), kind=kind, actor=actor, detail=detail, created_at=now))


# --- escalation ----------------------------------------------------------------------------------------


def escalate(
    s: Session,
    appeal: Appeal,
    *,
    reason: str,
    key: str,
    now: datetime,
    workflow: Workflow | None = None,
) -> bool:
    """Raise `appeal` to the superior of its unit's head (whoever acts for that head on today's date) and
    to the project office; once per `key` (e.g. overdue:<appeal>:<due>, not_resolved:<appeal>:<n>).
    `reason`: a code of ESCALATION_REASONS (translated for each recipient) or words shown as given.
    Returns False when this key was escalated already. `workflow` adds the e-mail copy and its zone."""
    if not claim(s, f"escalate:{key}", appeal_id=appeal.id, now=now):
        return False
    tz = workflow.calendar.tz if workflow else ALMATY
    alerts = workflow.alerts if workflow else Alerts()
    on = _day(now, tz)
    units: list[int] = []
    if appeal.unit_id is not None:
        above = org.superior(s, appeal.unit_id)
        if above is not None:
            units.append(above)
    office = _project_office(s)
    if office is not None and office not in units:
        units.append(office)
    told: list[dict[str, object]] = []
    reached: set[int] = set()
    for unit_id in units:
        route = staff_work.route_to_unit(s, unit_id, on=on, appeal_id=appeal.id)
        if route.headless and route.user_ids and reached.issuperset(route.user_ids):
            continue  # it came up to the same people already (the unit above has no head with an account)
        reached.update(route.user_ids)
        who = alerts.to_unit_head(
            s,
            unit_id,
            key=f"escalate:{key}",
            kind="escalation",
            msgid=ESCALATION,
            params={"number": appeal.number, "reason": reason},
            translate={"reason": ESCALATION_REASONS[reason]} if reason in ESCALATION_REASONS else {},
            on=on,
            now=now,
            appeal_id=appeal.id,
        )
        told.append(
            {"unit_id": unit_id, "user_id": who.user_id if who else None, "deputy": bool(who and who.deputy)}
        )
    detail: dict[str, object] = {"reason": reason, "key": key, "to": told}
    _event(s, appeal, "escalated", "system", detail, now)
    audit.record(s, actor="system", action="appeal.escalate", subject=appeal.number, detail=detail)
    return True


# --- the sweeps ----------------------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What one round did (counts), for logs and tests."""

    overdue: int = 0
    forwarding: int = 0
    reminders: int = 0
    extension_notices: int = 0
    digests: int = 0


class Deadlines:
    def __init__(self, workflow: Workflow, *, approvals: Approvals = no_approvals) -> None:
        self.workflow = workflow
        self.calendar = workflow.calendar
        self.terms = workflow.terms
        self.approvals = approvals

    @property
    def alerts(self) -> Alerts:
        return self.workflow.alerts

    def sweep_round(self, s: Session, *, now: datetime) -> SweepReport:
        return SweepReport(
            overdue=self.mark_overdue(s, now=now),
            forwarding=self.flag_forwarding(s, now=now),
            reminders=self.remind(s, now=now),
            extension_notices=self.check_extension_notices(s, now=now),
            digests=self.send_digests(s, now=now),
        )

    # R7 ------------------------------------------------------------------------------------------------

    def mark_overdue(self, s: Session, *, now: datetime) -> int:
        return self.workflow.mark_overdue(s, now=now, then=self._overdue)

    def _overdue(self, s: Session, appeal: Appeal, now: datetime) -> None:
        key = f"overdue:{appeal.id}:{appeal.due_at.isoformat()}"
        unit = appeal.unit_id if appeal.unit_id is not None else _project_office(s)
        if unit is not None:
            self.alerts.to_unit_head(
                s,
                unit,
                key=key,
                kind="overdue",
                msgid=OVERDUE,
                params={"number": appeal.number, "due": _show(appeal.due_at, self.calendar.tz)},
                on=_day(now, self.calendar.tz),
                now=now,
                appeal_id=appeal.id,
            )
        escalate(s, appeal, reason="overdue", key=key, now=now, workflow=self.workflow)

    # R5 ------------------------------------------------------------------------------------------------

    def flag_forwarding(self, s: Session, *, now: datetime) -> int:
        """Open appeals with no unit whose forwarding time (R5) has passed: the project office is told."""
        mark = literal("forwarding:") + cast(Appeal.id, String)
        late = s.exec(
            select(Appeal)
            .where(
                col(Appeal.status).in_(OPEN_STATUSES),
                col(Appeal.unit_id).is_(None),
                col(Appeal.forward_due_at) < now,
                ~exists().where(col(DeadlineMark.key) == mark),
            )
            .order_by(col(Appeal.forward_due_at), col(Appeal.id))
            .limit(BATCH)
        ).all()
        office, done = _project_office(s), 0
        for appeal in late:
            if not claim(s, f"forwarding:{appeal.id}", appeal_id=appeal.id, now=now):
                continue
            done += 1
            assert appeal.forward_due_at is not None
            detail: dict[str, object] = {"forward_due_at": appeal.forward_due_at.isoformat()}
            _event(s, appeal, "forwarding_late", "system", detail, now)
            audit.record(
                s, actor="system", action="appeal.forwarding_late", subject=appeal.number, detail=detail
            )
            if office is not None:
                self.alerts.to_unit_head(
                    s,
                    office,
                    key=f"forwarding:{appeal.id}",
                    kind="forwarding",
                    msgid=FORWARDING_LATE,
                    params={
                        "number": appeal.number,
                        "days": self.terms.forwarding.working_days,
                        "due": _show(appeal.forward_due_at, self.calendar.tz),
                    },
                    on=_day(now, self.calendar.tz),
                    now=now,
                    appeal_id=appeal.id,
                )
        return done

    # Reminders -----------------------------------------------------------------------------------------

    def _working_morning(self, now: datetime, hour: int) -> date | None:
        """Today (local) when it is a working day and `hour` has come, else None."""
        local = now.astimezone(self.calendar.tz)
        if not self.calendar.is_working_day(local.date()) or local.hour < hour:
            return None
        return local.date()

    def remind(self, s: Session, *, now: datetime) -> int:
        """T-3 and T-1 (terms.toml [reminders]): on the working day that many working days before the due
        day, from the configured hour; a day missed (the service was down) is caught up on the next
        working day by the nearest reminder not yet sent. The key holds the due day: an extension re-arms."""
        offsets = self.terms.reminder_days
        today = self._working_morning(now, self.terms.reminders.hour)
        if today is None or not offsets:
            return 0
        cal = self.calendar
        horizon = cal.due_at(cal._at(today, cal.work_start), max(offsets))
        soon = s.exec(
            select(Appeal)
            .where(
                col(Appeal.status).in_(OPEN_STATUSES),
                Appeal.due_at >= now,
                Appeal.due_at <= horizon,
                Appeal.overdue == False,  # noqa: E712
            )
            .order_by(col(Appeal.due_at), col(Appeal.id))
        ).all()
        office, done = _project_office(s), 0
        for appeal in soon:
            left = cal.working_days_left(now, appeal.due_at)
            offset = min((d for d in offsets if d >= left), default=None)
            unit = appeal.unit_id if appeal.unit_id is not None else office
            if offset is None or unit is None:
                continue
            due_day = _day(appeal.due_at, cal.tz).isoformat()
            key = f"remind:{appeal.id}:T-{offset}:{due_day}"
            if not claim(s, key, appeal_id=appeal.id, now=now):
                continue
            done += 1
            who = self.alerts.to_unit_head(
                s,
                unit,
                key=key,
                kind="reminder",
                msgid=REMINDER,
                params={"number": appeal.number, "due": _show(appeal.due_at, cal.tz), "left": left},
                on=today,
                now=now,
                appeal_id=appeal.id,
            )
            detail: dict[str, object] = {"offset": offset, "left": left, "due_day": due_day}
            detail["user_id"] = who.user_id if who else None
            _event(s, appeal, "reminder", "system", detail, now)
        return done

    # R4's notice clock ---------------------------------------------------------------------------------

    def check_extension_notices(self, s: Session, *, now: datetime) -> int:
        """An extension's notice to the citizen must be delivered within notice_working_days (R4): when
        that time has come, a notice not sent (or a call task not done) is the project office's concern."""
        due = s.exec(
            select(Appeal)
            .where(col(Appeal.extension_notice_due_at) < now)
            .order_by(col(Appeal.extension_notice_due_at), col(Appeal.id))
            .limit(BATCH)
        ).all()
        done = 0
        for appeal in due:
            seen = appeal.extension_notice_due_at
            key = notices.notice_key("extension", require_id(appeal), appeal.extensions)
            row = s.exec(select(OutboxItem.state).where(OutboxItem.key == key)).first()
            task = s.exec(select(StaffTask.done_at).where(StaffTask.key == f"call:{key}")).first()
            delivered = row == "sent" or task is not None
            s.execute(
                update(Appeal)
                .where(col(Appeal.id) == appeal.id, col(Appeal.extension_notice_due_at) == seen)
                .values(extension_notice_due_at=None)
            )
            if delivered or not claim(
                s, f"extension_notice:{appeal.id}:{appeal.extensions}", appeal_id=appeal.id, now=now
            ):
                continue
            done += 1
            detail: dict[str, object] = {"n": appeal.extensions, "outbox_state": row}
            _event(s, appeal, "extension_notice_late", "system", detail, now)
            audit.record(
                s, actor="system", action="appeal.extension_notice_late", subject=appeal.number, detail=detail
            )
            for unit in {u for u in (_project_office(s), appeal.unit_id) if u is not None}:
                self.alerts.to_unit_head(
                    s,
                    unit,
                    key=f"extension_notice:{appeal.id}:{appeal.extensions}",
                    kind="extension_notice",
                    msgid=EXTENSION_NOTICE_LATE,
                    params={"number": appeal.number, "days": self.terms.extension.notice_working_days},
                    on=_day(now, self.calendar.tz),
                    now=now,
                    appeal_id=appeal.id,
                )
        return done

    # The daily digest ----------------------------------------------------------------------------------

    def send_digests(self, s: Session, *, now: datetime) -> int:
        """Once a working day, from the configured hour: each person who answers for units that day gets
        one notice listing what is due soon, what is overdue and what waits for their approval (nothing
        to say: no notice). A unit whose head has no account is covered by the digest of whoever its
        notices go to (staff_work.route_to_unit: up the chain, then the project office), which says so;
        nobody at all: it gets it on the unit."""
        today = self._working_morning(now, self.terms.digest.hour)
        if today is None or not claim(s, f"digests:{today.isoformat()}", appeal_id=None, now=now):
            return 0
        people: dict[int, list[int]] = {}
        covered: dict[int, list[int]] = {}  # person -> the headless units their digest covers too
        nobody: list[int] = []
        for unit_id in s.exec(select(Unit.id).order_by(col(Unit.id))).all():
            assert unit_id is not None
            route = staff_work.route_to_unit(s, unit_id, on=today)
            if not route.user_ids:
                if route.responsible is not None:
                    nobody.append(unit_id)
                continue
            for user_id in route.user_ids:
                people.setdefault(user_id, []).append(unit_id)
                if route.headless:
                    covered.setdefault(user_id, []).append(unit_id)
        sent = 0
        for user_id, units in people.items():
            user = s.get(StaffUser, user_id)
            language = user.language if user else None
            text = self._digest_text(s, units, today, now, language)
            if text and covered.get(user_id):
                names = ", ".join(org.unit_title(s, u, language) for u in covered[user_id])
                text += "\n\n" + render_for(language, DIGEST_HEADLESS, {"units": names})
            if (
                user is not None
                and text
                and self.alerts.to_user(
                    s, user, key=f"digest:{user_id}:{today.isoformat()}", kind="digest", text=text, now=now
                )
            ):
                sent += 1
        for unit_id in nobody:
            text = self._digest_text(s, [unit_id], today, now, None)
            if text and self._unit_digest(s, unit_id, text, today, now):
                sent += 1
        return sent

    def _unit_digest(self, s: Session, unit_id: int, text: str, today: date, now: datetime) -> bool:
        key = f"digest:unit:{unit_id}:{today.isoformat()}"
        return staff_work.notify_staff(s, key=key, kind="digest", text=text, now=now, unit_id=unit_id)

    def _digest_text(
        self, s: Session, units: Sequence[int], today: date, now: datetime, language: str | None
    ) -> str:
        cal, days = self.calendar, max(self.terms.reminder_days or (3,))
        horizon = cal.due_at(cal._at(today, cal.work_start), days)
        open_here = (col(Appeal.status).in_(OPEN_STATUSES), col(Appeal.unit_id).in_(list(units)))
        due = s.exec(
            select(Appeal)
            .where(*open_here, Appeal.overdue == False, Appeal.due_at <= horizon)  # noqa: E712
            .order_by(col(Appeal.due_at), col(Appeal.id))
        ).all()
        overdue = s.exec(
            select(Appeal)
            .where(*open_here, col(Appeal.overdue).is_(True))
            .order_by(col(Appeal.due_at), col(Appeal.id))
        ).all()
        approvals = list(self.approvals(s, units))
        if not (due or overdue or approvals):
            return ""
        lines = [render_for(language, DIGEST_TITLE, {"day": today.strftime("%d.%m.%Y")})]
        for title, rows, extra in (
            (DIGEST_DUE, due, {"days": days}),
            (DIGEST_OVERDUE, overdue, {}),
            (DIGEST_APPROVAL, approvals, {}),
        ):
            if not rows:
                continue
            lines.append("")
            lines.append(render_for(language, title, {"count": len(rows), **extra}))
            lines += [
                "  " + render_for(language, DIGEST_LINE, {"number": a.number, "due": _show(a.due_at, cal.tz)})
                for a in rows[:DIGEST_LIST]
            ]
        return "\n".join(lines)
