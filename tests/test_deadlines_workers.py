"""Two workers run the deadline sweeps at the same moment against the same database: every reminder,
escalation, flag, digest and e-mail copy exists once (issue 10: "each notice produced exactly once while
two workers run the sweeps at the same time on PostgreSQL"). Each worker has its own engine (its own
connections), as two `adaldyk worker` processes would; a barrier starts every round together."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, date

from sqlmodel import Session, select

from adaldyk_bots import deadlines as dl
from adaldyk_bots.storage.db import make_engine, unit_of_work
from adaldyk_bots.storage.models import Appeal, AppealEvent, AuditEvent, DeadlineMark, OutboxItem, StaffNotice
from tests.deadline_support import (
    build_ministry,
    build_workflow,
    config_copy,
    local,
    register,
    set_due,
    viewer,
)

WORKERS = 2
ROUNDS = 6


def test_two_workers_sweeping_at_once_write_everything_exactly_once(database_url, tmp_path):
    config_dir = config_copy(tmp_path)
    setup = make_engine(database_url)
    workflow = build_workflow(config_dir, mail_account="ministry@ecogeo.gov.kz")
    ministry = build_ministry(setup, deputy_range=(date(2026, 3, 18), date(2026, 3, 18)))
    dept = ministry.units["cerc_astana"]
    overdue = [register(setup, workflow, at=local(2026, 2, 2, 10, i), unit_id=dept) for i in range(8)]
    for a in overdue:
        set_due(setup, a.id, local(2026, 3, 17, 18, 0).astimezone(UTC))
    reminded = [register(setup, workflow, at=local(2026, 2, 3, 10, i), unit_id=dept) for i in range(8)]
    for a in reminded:
        set_due(setup, a.id, local(2026, 3, 20, 18, 0).astimezone(UTC))  # T-2 on Wed 18 Mar: T-3 caught up
    unforwarded = [register(setup, workflow, at=local(2026, 3, 2, 10, i)) for i in range(8)]
    for a in unforwarded:
        set_due(setup, a.id, local(2026, 4, 10, 18, 0).astimezone(UTC))  # no reminder yet
    extended = register(setup, workflow, at=local(2026, 2, 4, 10, 0), unit_id=dept)
    admin = viewer(setup, ministry.users["admin"])
    with unit_of_work(setup) as s:
        found = s.get(Appeal, extended.id)
        dl.extend(
            s, workflow, found, viewer=admin, reason="проверка", working_days=5, now=local(2026, 3, 10, 10)
        )
    set_due(setup, extended.id, local(2026, 4, 10, 18, 0).astimezone(UTC))  # neither overdue nor reminded
    setup.dispose()

    now = local(2026, 3, 18, 10, 0)  # a working Wednesday after the digest hour
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []
    reports: list[dl.SweepReport] = []

    def worker() -> None:
        engine = make_engine(database_url)
        deadlines = dl.Deadlines(build_workflow(config_dir, mail_account="ministry@ecogeo.gov.kz"))
        try:
            for _ in range(ROUNDS):
                barrier.wait(timeout=60)
                with unit_of_work(engine) as s:
                    reports.append(deadlines.sweep_round(s, now=now))
        except BaseException as exc:  # noqa: BLE001 - reported below with the others
            errors.append(exc)
            barrier.abort()
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors

    total = dl.SweepReport()
    for r in reports:
        for field in ("overdue", "forwarding", "reminders", "extension_notices", "digests"):
            setattr(total, field, getattr(total, field) + getattr(r, field))
    assert (total.overdue, total.forwarding, total.reminders, total.extension_notices, total.digests) == (
        len(overdue),
        len(unforwarded),
        len(reminded),
        1,
        1,
    )
    engine = make_engine(database_url)
    with Session(engine) as s:
        kinds = Counter((e.appeal_id, e.kind) for e in s.exec(select(AppealEvent)))
        for a in overdue:
            assert kinds[(a.id, "overdue")] == 1 and kinds[(a.id, "escalated")] == 1
        for a in reminded:
            assert kinds[(a.id, "reminder")] == 1
        for a in unforwarded:
            assert kinds[(a.id, "forwarding_late")] == 1
        assert kinds[(extended.id, "extension_notice_late")] == 1
        by_kind = Counter(n.kind for n in s.exec(select(StaffNotice)))
        # Escalation: the committee's acting deputy (that one day) and the project office, per appeal.
        assert by_kind == {
            "overdue": len(overdue),
            "escalation": 2 * len(overdue),
            "reminder": len(reminded),
            "forwarding": len(unforwarded),
            "extension_notice": 2,
            "digest": 1,  # the department's head: nobody else has anything due
        }
        deputy = ministry.users["committee_deputy"]
        assert {n.user_id for n in s.exec(select(StaffNotice).where(StaffNotice.kind == "escalation"))} == {
            deputy,
            ministry.users["office_head"],
        }
        audits = Counter(a.action for a in s.exec(select(AuditEvent)))
        assert audits["appeal.overdue"] == len(overdue) and audits["appeal.escalate"] == len(overdue)
        marks = [m.key for m in s.exec(select(DeadlineMark))]
        assert len(marks) == len(set(marks))
        mails = [m.key for m in s.exec(select(OutboxItem).where(OutboxItem.channel == "email"))]
        assert len(mails) == len(set(mails)) and mails  # the office head has an address
    engine.dispose()
