"""The appeal page and its actions over real HTTP, on the real service polling the fake Telegram:
versions original first, attachments, deliveries with their state and code, every action, CSRF,
auditors, department isolation (the same 404 as a missing number), hostile text, Kazakh."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, col, func, select

from adaldyk_bots.i18n import read_catalog, translations
from adaldyk_bots.storage.models import (
    Appeal,
    AppealEvent,
    AppealNote,
    AuditEvent,
    MessageVersion,
    OutboxItem,
    StaffUser,
)
from connectors.telegram.fake import FAKE_JPEG, FakeTelegramServer
from tests.appeal_support import UNIT_A, UNIT_B, Workspace, start_workspace
from tests.conftest import TOKEN
from tests.support import wait_until

HOSTILE = '<script>alert("x")</script><img src=x onerror="alert(1)"> &amp; &lt;b&gt; «кавычки»'
MISSING = "ADL-2020-999999"


@pytest.fixture
def workspace(make_settings: Any, fake_telegram: FakeTelegramServer) -> Iterator[Workspace]:
    yield from start_workspace(make_settings, fake_telegram)


def _count(workspace: Workspace, model: Any) -> int:
    with Session(workspace.engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def _actions(number: str, outbox_id: int) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"/appeals/{number}/reply", {"text": "Жауап"}),
        (f"/appeals/{number}/status", {"status": "in_progress", "reason": ""}),
        (f"/appeals/{number}/unit", {"unit": UNIT_A}),
        (f"/appeals/{number}/assignee", {"assignee": ""}),
        (f"/appeals/{number}/note", {"text": "ішкі жазба"}),
        (f"/appeals/{number}/spam", {}),
        (f"/appeals/{number}/deliveries/{outbox_id}/retry", {}),
    ]


def test_the_page_shows_versions_original_first_attachments_and_deliveries(workspace: Workspace) -> None:
    number = workspace.citizen_writes(3001, "Өзенге қалдық төгіліп жатыр", first_name="Айгүл")
    workspace.fake.citizen_edit(
        TOKEN, chat_id=3001, message_id=1, text="Өзенге зауыт қалдық төгіп жатыр (түзетілді)"
    )
    wait_until(lambda: _count(workspace, MessageVersion), what="the edit")
    assert workspace.citizen_writes(3001, None, photo=True, caption="Міне суреті") == number
    workspace.wait_delivery(number, "ack", "sent")

    client, _ = workspace.client("moder")
    page = client.get(f"/appeals/{number}?lang=kk")
    assert page.status_code == 200, page.text[:500]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    body = page.text
    original, edit = body.find("Өзенге қалдық төгіліп жатыр"), body.find("(түзетілді)")
    assert 0 < original < edit  # the original first, the edit after, both kept
    assert 'data-version="0"' in body and 'data-version="1"' in body
    assert re.search(r'<article[^>]+id="delivery-\d+" data-delivery-state="sent"', body)

    image = re.search(
        rf'<img class="attachment-image" src="(/appeals/{number}/messages/\d+/attachments/\d+)"', body
    )
    assert image, "the photo is shown on the page"
    got = client.get(image.group(1))
    assert got.status_code == 200 and got.content == FAKE_JPEG
    assert (
        got.headers["content-type"].startswith("image/")
        and got.headers["x-content-type-options"] == "nosniff"
    )
    download = client.get(image.group(1) + "?download=1")
    assert download.headers["content-disposition"].startswith("attachment")

    # The citizen card and the legal clock.
    assert "Айгүл" in body and "working day" not in body  # kk: translated
    assert 'data-days-left="' in body
    with Session(workspace.engine) as s:
        views = s.exec(
            select(AuditEvent).where(AuditEvent.action == "appeal.view", AuditEvent.subject == number)
        ).all()
    assert [v.actor for v in views] == ["user:moder"]  # every view, by whom


def test_every_action_works_and_the_note_never_reaches_the_citizen(workspace: Workspace) -> None:
    number = workspace.citizen_writes(3002, "Саябақтағы ағаштар кесіліп жатыр")
    workspace.wait_delivery(number, "ack", "sent")
    client, csrf = workspace.client("moder")

    def post(path: str, **data: str) -> str:
        answer = client.post(
            f"/appeals/{number}/{path}", data={**data, "csrf_token": csrf}, follow_redirects=False
        )
        assert answer.status_code == 303, (path, answer.status_code, answer.text[:300])
        location = answer.headers["location"]
        assert location.startswith(f"/appeals/{number}")
        return location

    assert "done=reply" in post("reply", text="Инспекторлар жіберілді")
    reply = workspace.wait_delivery(number, "reply", "sent")
    assert "Инспекторлар жіберілді" in reply.text
    assert "error=empty" in post("reply", text="   ")

    assert "error=reason" in post("status", status="rejected", reason="")  # the law wants a reason
    assert "done=status" in post("status", status="rejected", reason="Өтініште мекенжай жоқ")
    assert "error=unchanged" in post("status", status="rejected", reason="again")
    assert "error=illegal" in post("status", status="in_progress")  # lifecycle.py: a rejected one reopens
    assert "done=status" in post("status", status="reopened", reason="Мекенжай табылды")
    assert "done=status" in post("status", status="in_progress")
    assert "error=status" in post("status", status="nonsense")

    assert "done=unit" in post("unit", unit=UNIT_A)
    assert "error=unit" in post("unit", unit="no-such-unit")
    with Session(workspace.engine) as s:
        astana = s.exec(select(StaffUser.id).where(StaffUser.username == "astana")).one()
        almaty = s.exec(select(StaffUser.id).where(StaffUser.username == "almaty")).one()
    assert "error=person" in post("assignee", assignee=str(almaty))  # not of the appeal's unit
    assert "done=assignee" in post("assignee", assignee=str(astana))

    secret = "Ішкі: ауыл әкімімен сөйлесу керек"
    assert "done=note" in post("note", text=secret)
    assert "error=empty" in post("note", text="")

    page = client.get(f"/appeals/{number}?done=note").text
    assert secret in page and "Асель Астанаева" in page
    assert "Өтініште мекенжай жоқ" in page  # the reason, in the history

    with Session(workspace.engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        assert appeal.status == "in_progress" and appeal.assignee_id == astana
        assert s.exec(select(AppealNote.text).where(AppealNote.appeal_id == appeal.id)).all() == [secret]
        outbox_texts = s.exec(select(OutboxItem.text).where(OutboxItem.appeal_id == appeal.id)).all()
        kinds = s.exec(select(AppealEvent.kind).where(AppealEvent.appeal_id == appeal.id)).all()
        audited = set(s.exec(select(AuditEvent.action).where(AuditEvent.subject == number)).all())
    assert not any(secret in t for t in outbox_texts)
    assert {"reply", "status", "unit", "assignee", "note"} <= set(kinds)
    assert {"appeal.reply", "appeal.status", "appeal.unit", "appeal.assignee", "appeal.note"} <= audited
    sent = [m["text"] for m in workspace.fake.sent_messages(TOKEN, 3002)]
    assert not any(secret in t for t in sent)

    assert "done=spam" in post("spam")
    with Session(workspace.engine) as s:
        assert s.exec(select(Appeal.status).where(Appeal.number == number)).one() == "rejected"


def test_a_blocked_citizen_shows_failed_and_retry_sends_again(workspace: Workspace) -> None:
    number = workspace.citizen_writes(3003, "Көлге мұнай төгілді")
    workspace.wait_delivery(number, "ack", "sent")
    workspace.fake.block_chat(TOKEN, 3003)
    client, csrf = workspace.client("moder")
    client.post(f"/appeals/{number}/reply", data={"text": "Тексереміз", "csrf_token": csrf})
    failed = workspace.wait_delivery(number, "reply", "failed")
    assert failed.last_error_code == "telegram.blocked"

    page = client.get(f"/appeals/{number}?lang=ru").text
    block = page[page.index(f'id="delivery-{failed.id}"') :]
    assert 'data-delivery-state="failed"' in block.split(">", 1)[0]
    assert "telegram.blocked" in block[:3000] and "заблокировал" in block[:3000]
    assert f"/deliveries/{failed.id}/retry" in block[:4000]

    # Retry while still blocked: a new attempt really goes out, and fails again, visibly.
    workspace.fake.unblock_chat(TOKEN, 3003)
    answer = client.post(
        f"/appeals/{number}/deliveries/{failed.id}/retry", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303 and "done=retry" in answer.headers["location"]
    workspace.wait_delivery(number, "reply", "sent")
    assert any("Тексереміз" in m["text"] for m in workspace.fake.sent_messages(TOKEN, 3003))
    page = client.get(f"/appeals/{number}?lang=en").text
    block = page[page.index(f'id="delivery-{failed.id}"') :][:4000]
    assert 'data-delivery-state="sent"' in page[page.index(f'id="delivery-{failed.id}"') - 10 :][:200]
    assert "Retry requested by Мира Модератор" in block and "Attempts: 2" in block
    again = client.post(
        f"/appeals/{number}/deliveries/{failed.id}/retry", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert "error=retry" in again.headers["location"]  # a sent message is not sent twice
    with Session(workspace.engine) as s:
        events = s.exec(select(AppealEvent).where(AppealEvent.kind == "requeued")).all()
        audited = s.exec(select(AuditEvent.actor).where(AuditEvent.action == "delivery.retry")).all()
    assert [e.actor for e in events] == ["user:moder"] and audited == ["user:moder"]


def test_a_delivery_of_another_appeal_is_not_found(workspace: Workspace) -> None:
    first = workspace.citizen_writes(3004, "Бірінші өтініш")
    second = workspace.citizen_writes(3005, "Екінші өтініш")
    ack = workspace.wait_delivery(second, "ack", "sent")
    client, csrf = workspace.client("moder")
    answer = client.post(f"/appeals/{first}/deliveries/{ack.id}/retry", data={"csrf_token": csrf})
    assert answer.status_code == 404


def test_without_csrf_or_as_an_auditor_nothing_changes(workspace: Workspace) -> None:
    number = workspace.citizen_writes(3006, "Шу")
    ack = workspace.wait_delivery(number, "ack", "sent")
    moder, _ = workspace.client("moder")
    auditor, csrf = workspace.client("audit")
    assert auditor.get(f"/appeals/{number}").status_code == 200  # reads everything
    for path, data in _actions(number, ack.id or 0):
        assert moder.post(path, data=data).status_code == 403, path
        assert moder.post(path, data={**data, "csrf_token": "forged"}).status_code == 403, path
        assert auditor.post(path, data={**data, "csrf_token": csrf}).status_code == 403, path
    with Session(workspace.engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        assert appeal.status == "received" and appeal.unit_id is None
        assert s.exec(select(func.count()).select_from(AppealNote)).one() == 0
        assert (
            s.exec(select(func.count()).select_from(OutboxItem).where(OutboxItem.purpose == "reply")).one()
            == 0
        )


def test_another_departments_appeal_is_exactly_a_missing_number(workspace: Workspace) -> None:
    number = workspace.citizen_writes(3007, "Алматыдағы ауа ластануы", photo=True)
    workspace.assign(number, UNIT_B)
    ack = workspace.wait_delivery(number, "ack", "sent")
    with Session(workspace.engine) as s:
        from adaldyk_bots.storage.models import Message

        photo = s.exec(
            select(Message.id)
            .join(Appeal, col(Appeal.id) == Message.appeal_id)
            .where(Appeal.number == number)
        ).first()
    astana, csrf = workspace.client("astana")
    almaty, _ = workspace.client("almaty")
    assert almaty.get(f"/appeals/{number}").status_code == 200  # its own department sees it

    def same(path_hidden: str, path_missing: str, data: dict[str, str] | None = None) -> None:
        if data is None:
            hidden, missing = astana.get(path_hidden), astana.get(path_missing)
        else:
            hidden = astana.post(path_hidden, data={**data, "csrf_token": csrf}, follow_redirects=False)
            missing = astana.post(path_missing, data={**data, "csrf_token": csrf}, follow_redirects=False)
        assert hidden.status_code == missing.status_code == 404, (path_hidden, hidden.status_code)
        assert hidden.text.replace(number, "N") == missing.text.replace(MISSING, "N"), path_hidden

    same(f"/appeals/{number}", f"/appeals/{MISSING}")
    same(
        f"/appeals/{number}/messages/{photo}/attachments/0",
        f"/appeals/{MISSING}/messages/{photo}/attachments/0",
    )
    same(f"/appeals/{number}/reply-preview?text=x", f"/appeals/{MISSING}/reply-preview?text=x")
    for (hidden_path, data), (missing_path, _) in zip(
        _actions(number, ack.id or 0), _actions(MISSING, ack.id or 0), strict=True
    ):
        same(hidden_path, missing_path, data)
    with Session(workspace.engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        assert appeal.status == "received"
        assert s.exec(select(func.count()).select_from(AppealNote)).one() == 0


def test_citizen_html_is_shown_as_text(workspace: Workspace) -> None:
    number = workspace.citizen_writes(3008, HOSTILE, first_name='<b onmouseover="x()">Иван</b>')
    client, _ = workspace.client("moder")
    body = client.get(f"/appeals/{number}").text
    assert "<script>alert" not in body and "<img src=x" not in body and "<b onmouseover" not in body
    assert html.escape(HOSTILE, quote=False) in body or "&lt;script&gt;alert(" in body
    assert "&amp;amp; &amp;lt;b&amp;gt;" in body  # entities shown as written, not decoded


def _visible_text(page: str) -> str:
    page = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", page)
    page = re.sub(r"(?s)<!--.*?-->", " ", page)
    # The language switcher names each language in itself ("English", "Қазақша") on every page, on purpose.
    page = re.sub(r'(?s)<nav class="langs".*?</nav>', " ", page)
    # What people wrote (citizens' messages, our replies, notes: class "text") is data, not the UI.
    page = re.sub(r'(?s)<(div|span|p) class="[^"]*\btext\b[^"]*">.*?</\1>', " ", page)
    # Attribute values people read: titles, labels, placeholders, alt texts.
    shown = " ".join(re.findall(r'(?:title|aria-label|placeholder|alt)="([^"]*)"', page))
    return html.unescape(re.sub(r"<[^>]+>", " ", page) + " " + shown)


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_the_page_in_kazakh_and_russian_has_no_english_left(workspace: Workspace, lang: str) -> None:
    number = workspace.citizen_writes(3009, "Қоқыс полигоны өртеніп жатыр", photo=True)
    workspace.fake.block_chat(TOKEN, 3009)
    client, csrf = workspace.client("moder")
    client.post(f"/appeals/{number}/reply", data={"text": "Тексереміз", "csrf_token": csrf})
    client.post(f"/appeals/{number}/note", data={"text": "жазба", "csrf_token": csrf})
    client.post(
        f"/appeals/{number}/status", data={"status": "extended", "reason": "себеп", "csrf_token": csrf}
    )
    workspace.wait_delivery(number, "reply", "failed")
    for query in ("", "&template=thanks", "&done=retry", "&error=reason"):
        text = _visible_text(client.get(f"/appeals/{number}?lang={lang}{query}").text)
        tr = translations(lang)
        leftovers = sorted(
            m.id
            for m in read_catalog("en")
            if isinstance(m.id, str)
            and m.id
            and len(m.id) > 3
            and tr.gettext(m.id) != m.id
            and _has_word(text, m.id)
        )
        context = [
            text[max(0, m.start() - 60) : m.end() + 60]
            for w in leftovers
            for m in [re.search(re.escape(w), text)]
            if m
        ]
        assert not leftovers, f"{lang}{query}: English left on the page: {leftovers} {context}"


def _has_word(text: str, msgid: str) -> bool:
    # A msgid with placeholders is looked for by its longest literal piece.
    pieces = [p.strip() for p in re.split(r"%\(\w+\)[sd]|%[sd]", msgid) if p.strip()]
    probe = max(pieces, key=len) if pieces else msgid
    return len(probe) > 3 and re.search(rf"(?<!\w){re.escape(probe)}(?!\w)", text) is not None


def test_reply_preview_splits_as_the_channel_will(workspace: Workspace, make_settings: Any) -> None:
    number = workspace.citizen_writes(3010, "Ұзын жауап керек")
    client, _ = workspace.client("moder")
    long_text = ("Бұл өте ұзын жауап. " * 400).strip()  # ~8,000 characters: two Telegram messages
    preview = client.get(
        f"/appeals/{number}/reply-preview", params={"text": long_text}, headers={"HX-Request": "true"}
    )
    assert preview.status_code == 200
    assert 'data-parts="2"' in preview.text and "4096" in preview.text
    page = client.get(f"/appeals/{number}?template=inspection_done&lang=ru").text
    assert "инспекторлар тексеру жүргізді" in page.lower()  # the template in the appeal's language (kk)
    assert 'data-parts="1"' in page
    assert "Окно ответа" in page


def test_the_citizen_card_lists_other_appeals_only_in_scope(workspace: Workspace) -> None:
    first = workspace.citizen_writes(3011, "Бірінші: өзен ластанған")
    workspace.assign(first, UNIT_A)
    moder, csrf = workspace.client("moder")
    moder.post(f"/appeals/{first}/status", data={"status": "answered", "csrf_token": csrf})
    second = workspace.citizen_writes(3011, "Екінші: орман өртенді")
    assert second != first  # the first was answered: a new appeal of the same citizen
    workspace.assign(second, UNIT_B)

    card = moder.get(f"/appeals/{second}").text
    assert f'href="/appeals/{first}"' in card  # a moderator sees every appeal of the citizen
    almaty, _ = workspace.client("almaty")
    card = almaty.get(f"/appeals/{second}").text
    assert first not in card  # another department's appeal is not even named


def test_a_message_the_citizen_deleted_keeps_its_words_and_says_so(workspace: Workspace) -> None:
    # Platforms that report deletions (Meta: Instagram is_deleted, a feed comment's `remove`) mark the
    # message (workflow._mark_deleted, tested with Meta's payloads in tests/connectors/meta); the page
    # shows the words and the mark, never an empty message.
    from sqlalchemy import update

    from adaldyk_bots.storage.db import unit_of_work, utcnow
    from adaldyk_bots.storage.models import Message

    number = workspace.citizen_writes(3011, "Орманда заңсыз ағаш кесіліп жатыр")
    with unit_of_work(workspace.engine) as s:
        s.execute(update(Message).where(col(Message.text).contains("заңсыз")).values(deleted_at=utcnow()))
    client, _ = workspace.client("moder")
    body = client.get(f"/appeals/{number}?lang=ru").text
    assert "Орманда заңсыз ағаш кесіліп жатыр" in body
    assert 'data-deleted="1"' in body and "удалено гражданином" in body


@pytest.mark.parametrize(
    ("state", "code", "shown"),
    [
        ("pending", None, "ожидает отправки"),
        ("sending", None, "отправляется"),
        ("retrying", "telegram.network", "будет повторено"),
        ("sent", None, "доставлено"),
        ("failed", "telegram.blocked", "не доставлено"),
        ("held", "telegram.unauthorized", "задержано"),
        ("waiting", "meta.window_closed", "окна ответа"),
    ],
)
def test_every_delivery_state_is_on_the_page_as_an_attribute_and_words_with_its_code(
    make_settings: Any, state: str, code: str | None, shown: str
) -> None:
    # Set by hand on a service with no worker: each state as the dispatcher leaves it, read by the page.
    from datetime import timedelta

    from sqlalchemy import update

    from adaldyk_bots.storage.db import unit_of_work, utcnow
    from adaldyk_bots.web.appeal_pages import DELIVERY_STATES
    from tests.web_support import WebApp, create_user, login, seed_appeal

    assert state in DELIVERY_STATES
    with WebApp(make_settings()) as web:
        number = seed_appeal(web.runtime, chat=5, text="Өзенге қалдық төгілді")
        create_user(web.runtime.engine, "moder", "moderator")
        with unit_of_work(web.runtime.engine) as s:
            s.execute(
                update(OutboxItem).values(
                    state=state,
                    last_error_code=code,
                    last_error_detail="detail from the platform" if code else None,
                    next_attempt_at=utcnow() + timedelta(minutes=5),
                    attempts=1 if state in ("retrying", "sent", "failed") else 0,
                )
            )
        with Session(web.runtime.engine) as s:
            row = s.exec(select(OutboxItem)).one()
        login(web.client, "moder")
        for path in (f"/appeals/{number}?lang=ru", f"/appeals/{number}/deliveries/{row.id}?lang=ru"):
            page = web.client.get(path).text
            block = page[page.index(f'id="delivery-{row.id}"') :][:3000]
            assert block.startswith(f'id="delivery-{row.id}" data-delivery-state="{state}"'), block[:200]
            assert shown in block.lower(), (state, block)
            if code:
                assert f'<code class="error-code">{code}</code>' in block
            assert ("Следующая попытка" in block) == (state == "retrying")
            # Until it settles the page keeps asking for it (htmx); a settled one is left alone.
            assert ("hx-trigger" in block.split(">", 1)[0]) == (state not in ("sent", "failed"))
            # "Send again" where only a person can move it on (appeal_actions.RETRYABLE).
            assert ("/retry" in block) == (state in ("failed", "held")), state


def test_every_kind_of_history_entry_has_words_in_every_language() -> None:
    # The kinds the code writes: AppealEvent(kind="…"), and the first literal given to the modules' own
    # _event / _add_event helpers (answers, deadlines, extension, data_collection, workflow).
    import ast
    from pathlib import Path

    from adaldyk_bots.web.appeal_pages import EVENT_NAMES
    from tests.support import literal_arguments

    root = Path(__file__).resolve().parents[1]
    written = set(literal_arguments({"AppealEvent"}, "kind")) - {"none"}  # answers.last_event's stand-in
    for path in (root / "adaldyk_bots").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call):
                name = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                )
                if name in ("_event", "_add_event"):
                    first = next((a for a in node.args if isinstance(a, ast.Constant)), None)
                    if first is not None and isinstance(first.value, str):
                        written.add(first.value)
    assert {"created", "status", "reply", "answer_draft", "escalated", "edited"} <= written, written
    template = (root / "adaldyk_bots/web/templates/appeal.html").read_text("utf-8")
    own_lines = set(re.findall(r'e\.kind == "([a-z_]+)"', template))
    unnamed = written - own_lines - set(EVENT_NAMES)
    assert not unnamed, f"the history would show these as codes: {sorted(unnamed)}"
    for lang in ("kk", "ru"):
        for kind, msgid in EVENT_NAMES.items():
            assert translations(lang).gettext(msgid) != msgid, (lang, kind)
