"""Appeals taken on the phone line and at the reception room, over real HTTP on the real service: the form
(CSRF, roles, officers' units, errors next to their fields with what was typed kept), the R2 receipt as a
PDF (its text extracted with pypdf) and as a print page in Kazakh and Russian, "call the citizen" tasks on
/tasks and on the appeal page until done, and an undelivered notice (Telegram: the citizen blocked the bot)
becoming a task."""

from __future__ import annotations

import html
import io
from collections.abc import Iterator
from typing import Any

import pypdf
import pytest
from sqlmodel import Session, col, select

from adaldyk_bots.appeal_receipt import LABELS, PROGRESS_PHONE, TITLE, short_name
from adaldyk_bots.i18n import translations
from adaldyk_bots.org import ORG_FILE, sync_units
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import Appeal, AuditEvent, OutboxItem, StaffTask, StaffUser
from connectors.telegram.fake import FakeTelegramServer
from tests.appeal_support import UNIT_A, UNIT_B, Workspace
from tests.conftest import TOKEN
from tests.support import ServiceThread, free_port, wait_until
from tests.web_support import create_user

PHONE_LINE = "+7 7172 74-08-00"
PUBLIC_URL = "http://appeals.example.kz"
KAZAKH_LETTERS = "әғқңөұүһі"
TAKER = "Әбілқасымова Гүлнұр Серікқызы"
POSITION = "Ұйымдастыру, ғимараттар және жиһаз бөлімінің бас маманы"


@pytest.fixture
def workspace(make_settings: Any, fake_telegram: FakeTelegramServer) -> Iterator[Workspace]:
    settings = make_settings(
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        telegram_poll_timeout=1,
        port=free_port(),
        dispatch_interval_seconds=0.1,
        phone_line=PHONE_LINE,
        public_url=PUBLIC_URL,
    )
    with ServiceThread(settings) as svc:
        with unit_of_work(svc.runtime.engine) as s:
            sync_units(s, settings.config_dir / ORG_FILE)
        engine = svc.runtime.engine
        create_user(engine, "admin", "admin")
        create_user(engine, "moder", "moderator", full_name=TAKER)
        create_user(engine, "audit", "auditor")
        create_user(engine, "astana", "officer", UNIT_A, full_name="Асель Астанаева")
        create_user(engine, "almaty", "officer", UNIT_B)
        yield Workspace(svc, fake_telegram)


def _form(csrf: str, **fields: str) -> dict[str, str]:
    values = {
        "csrf_token": csrf,
        "channel": "phone",
        "kind": "complaint",
        "text": "Өзен жағасына қоқыс төгіліп жатыр, үш күннен бері ешкім шықпады.",
        "name": "Серікбаев Нұрлан Өмірұлы",
        "phone": "+7 701 234 56 78",
        "address": "Астана қ., Мәңгілік Ел даңғылы, 8",
        "unit": UNIT_A,
        "consent": "1",
    }
    values.update(fields)
    return {k: v for k, v in values.items() if v != ""}


def _appeal(workspace: Workspace, number: str) -> Appeal:
    with Session(workspace.engine) as s:
        return s.exec(select(Appeal).where(Appeal.number == number)).one()


def _register(workspace: Workspace, username: str = "moder", **fields: str) -> str:
    client, csrf = workspace.client(username)
    answer = client.post("/appeals/new", data=_form(csrf, **fields), follow_redirects=False)
    assert answer.status_code == 303, answer.text[:2000]
    location = answer.headers["location"]
    assert location.endswith("?done=registered")
    return location.removeprefix("/appeals/").split("?")[0]


def test_registering_by_phone_records_who_took_it_and_keeps_what_was_typed_on_errors(
    workspace: Workspace,
) -> None:
    client, csrf = workspace.client("moder")
    page = client.get("/appeals/new?lang=ru")
    assert page.status_code == 200 and 'name="channel" value="reception"' in page.text

    # Wrong IIN, no name: 422, each error next to its field, everything typed still there.
    bad = client.post("/appeals/new?lang=ru", data=_form(csrf, iin="900101300001", name=""))
    assert bad.status_code == 422
    ru = translations("ru").gettext
    assert (
        'id="iin-error"' in bad.text
        and html.escape(ru("The check digit does not match: a digit is mistyped.")) in bad.text
    )
    assert 'id="name-error"' in bad.text and 'aria-describedby="name-error"' in bad.text
    assert "Өзен жағасына қоқыс" in bad.text and 'value="900101300001"' in bad.text
    assert 'value="+7 701 234 56 78"' in bad.text
    # No way to answer, no consent: refused too.
    none = client.post("/appeals/new", data=_form(csrf, phone="", address="", consent=""))
    assert none.status_code == 422 and 'id="answer-error"' in none.text and 'id="consent-error"' in none.text
    # Without the CSRF token: 403, nothing registered.
    forged = client.post("/appeals/new", data=_form(""), follow_redirects=False)
    assert forged.status_code == 403
    with Session(workspace.engine) as s:
        assert not s.exec(select(Appeal).where(col(Appeal.channel).in_(["phone", "reception"]))).all()

    number = _register(workspace, iin="9001 0130 0007")
    appeal = _appeal(workspace, number)
    with Session(workspace.engine) as s:
        moder_id = s.exec(select(StaffUser.id).where(StaffUser.username == "moder")).one()
        audit = s.exec(select(AuditEvent).where(AuditEvent.action == "appeal.register")).all()
    assert appeal.channel == "phone" and appeal.taken_by_id == moder_id and appeal.status == "registered"
    assert appeal.applicant_phone == "+7 701 234 56 78" and appeal.category == "complaint"
    assert appeal.applicant_iin == "900101300007" and appeal.formal
    assert [(a.actor, a.subject) for a in audit] == [("user:moder", number)]
    page = client.get(f"/appeals/{number}?done=registered")
    assert page.status_code == 200
    assert f'href="/appeals/{number}/receipt"' in page.text and "Өзен жағасына қоқыс" in page.text


def test_officers_register_for_their_own_units_only_and_auditors_not_at_all(workspace: Workspace) -> None:
    client, csrf = workspace.client("astana")
    form = client.get("/appeals/new").text
    assert f'value="{UNIT_A}"' in form and f'value="{UNIT_B}"' not in form
    other = client.post("/appeals/new", data=_form(csrf, unit=UNIT_B, channel="reception"))
    assert other.status_code == 422 and 'id="unit-error"' in other.text
    number = _register(workspace, "astana", channel="reception")
    assert _appeal(workspace, number).channel == "reception"

    auditor, audit_csrf = workspace.client("audit")
    assert auditor.get("/appeals/new").status_code == 403
    assert auditor.post("/appeals/new", data=_form(audit_csrf)).status_code == 403


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(content)).pages)


def test_the_receipt_has_every_r2_field_in_kazakh_and_russian(workspace: Workspace) -> None:
    admin, admin_csrf = workspace.client("admin")
    with Session(workspace.engine) as s:
        moder = s.exec(select(StaffUser).where(StaffUser.username == "moder")).one()
    saved = admin.post(
        f"/admin/users/{moder.id}",
        data={
            "csrf_token": admin_csrf,
            "role": "moderator",
            "full_name": TAKER,
            "position": POSITION,
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    number = _register(workspace)
    appeal = _appeal(workspace, number)
    tz = workspace.svc.runtime.workflow.calendar.tz
    registered = appeal.registered_at.astimezone(tz).strftime("%d.%m.%Y %H:%M")
    due = appeal.due_at.astimezone(tz).strftime("%d.%m.%Y")

    client, _csrf = workspace.client("moder")
    pdf = client.get(f"/appeals/{number}/receipt")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    page = client.get(f"/appeals/{number}/receipt?format=html")
    assert page.status_code == 200 and "@media print" in page.text
    for text in (_pdf_text(pdf.content), html.unescape(page.text)):
        flat = " ".join(text.split())
        for value in (number, registered, due, "Әбілқасымова Г. С.", POSITION, PUBLIC_URL + "/public/status"):
            assert value in flat, value
        assert PHONE_LINE in flat
        for lang in ("kk", "ru"):
            _ = translations(lang).gettext
            for msgid in (TITLE, *LABELS.values()):
                assert " ".join(_(msgid).split()) in flat, (lang, msgid)
            assert " ".join((_(PROGRESS_PHONE) % {"phone": PHONE_LINE}).split()) in flat
        assert set(KAZAKH_LETTERS) <= set(text.lower())

    # Out of scope: the same 404 as a number that does not exist, for both forms.
    other, _ = workspace.client("almaty")
    assert other.get(f"/appeals/{number}/receipt").status_code == 404
    assert other.get(f"/appeals/{number}/receipt?format=html").status_code == 404
    assert client.get("/appeals/ADL-2020-999999/receipt").status_code == 404


def _open_tasks(workspace: Workspace, number: str) -> list[StaffTask]:
    with Session(workspace.engine) as s:
        return list(
            s.exec(
                select(StaffTask)
                .join(Appeal, col(Appeal.id) == StaffTask.appeal_id)
                .where(Appeal.number == number, col(StaffTask.done_at).is_(None))
            )
        )


def test_an_appeal_with_no_address_gives_call_tasks_until_they_are_done(workspace: Workspace) -> None:
    # The citizen gave an e-mail, but e-mail is off here: the notice is a call, never a silent gap.
    number = _register(workspace, email="nurlan@example.kz")
    appeal = _appeal(workspace, number)
    tasks = _open_tasks(workspace, number)
    assert [t.key for t in tasks] == [f"call:notice:registration:{appeal.id}"]
    assert tasks[0].kind == "call_citizen" and number in tasks[0].text

    client, csrf = workspace.client("astana")
    listing = client.get("/tasks")
    assert listing.status_code == 200
    assert f'data-task="{tasks[0].key}"' in listing.text and "+7 701 234 56 78" in listing.text
    assert html.escape(tasks[0].text.splitlines()[0]) in listing.text
    assert f'data-task="{tasks[0].key}"' in client.get(f"/appeals/{number}").text
    other, other_csrf = workspace.client("almaty")
    assert f'data-task="{tasks[0].key}"' not in other.get("/tasks").text
    # Outside the scope, done is refused like a missing task; an auditor may not; no outcome: asked again.
    assert (
        other.post(f"/tasks/{tasks[0].id}/done", data={"csrf_token": other_csrf, "outcome": "x"}).status_code
        == 404
    )
    auditor, audit_csrf = workspace.client("audit")
    assert f'data-task="{tasks[0].key}"' in auditor.get("/tasks").text
    assert (
        auditor.post(
            f"/tasks/{tasks[0].id}/done", data={"csrf_token": audit_csrf, "outcome": "x"}
        ).status_code
        == 403
    )
    empty = client.post(
        f"/tasks/{tasks[0].id}/done", data={"csrf_token": csrf, "outcome": " "}, follow_redirects=False
    )
    assert "error=task_outcome" in empty.headers["location"]
    assert len(_open_tasks(workspace, number)) == 1

    done = client.post(
        f"/tasks/{tasks[0].id}/done",
        data={"csrf_token": csrf, "outcome": "Қоңырау шалдым, хабарладым", "back": number},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].startswith(f"/appeals/{number}?done=task")
    assert _open_tasks(workspace, number) == []
    assert f'data-task="{tasks[0].key}"' not in client.get("/tasks").text
    again = client.post(
        f"/tasks/{tasks[0].id}/done", data={"csrf_token": csrf, "outcome": "x"}, follow_redirects=False
    )
    assert "error=task_already" in again.headers["location"]
    with Session(workspace.engine) as s:
        task = s.get(StaffTask, tasks[0].id)
        audit = s.exec(select(AuditEvent).where(AuditEvent.action == "task.done")).all()
    assert task is not None and task.outcome == "Қоңырау шалдым, хабарладым" and task.done_by_id is not None
    assert [(a.actor, a.subject) for a in audit] == [("user:astana", number)]

    # A reply or a status notice to a phone appeal has no connector to go through: a call task, not a row
    # left waiting in the outbox forever.
    answer = client.post(f"/appeals/{number}/reply", data={"text": "Бригада жіберілді", "csrf_token": csrf})
    assert answer.status_code == 303 and "done=reply" in answer.headers["location"]
    (call,) = _open_tasks(workspace, number)
    assert call.key.startswith("call:reply:") and "Бригада жіберілді" in call.text
    with Session(workspace.engine) as s:
        assert not s.exec(select(OutboxItem).where(OutboxItem.appeal_id == appeal.id)).all()


def test_a_notice_that_cannot_be_delivered_becomes_a_task(workspace: Workspace) -> None:
    number = workspace.citizen_writes(4004, "Саябақта ағаштар кесіліп жатыр")
    workspace.wait_delivery(number, "ack", "sent")
    workspace.fake.block_chat(TOKEN, 4004)
    client, csrf = workspace.client("moder")
    client.post(f"/appeals/{number}/reply", data={"text": "Тексеріп жатырмыз", "csrf_token": csrf})
    failed = workspace.wait_delivery(number, "reply", "failed")
    assert failed.last_error_code == "telegram.blocked"

    def task() -> StaffTask | None:
        return next((t for t in _open_tasks(workspace, number) if t.key == f"undelivered:{failed.id}"), None)

    found = wait_until(task, what="the undelivered notice's task")
    assert found.kind == "undelivered_notice" and found.outbox_id == failed.id and found.text == failed.text
    assert f'data-task="undelivered:{failed.id}"' in client.get("/tasks").text


def test_the_person_who_accepted_is_printed_as_surname_and_initials() -> None:
    assert short_name("Әбілқасымова Гүлнұр Серікқызы") == "Әбілқасымова Г. С."
    assert short_name("  Петров   иван ") == "Петров И."
    assert short_name("olga") == "olga"
