"""Triage of a signal on the appeal page and in the JSON API (triage.py, web/triage_pages.py), merging a
duplicate and reopening it: the real app over HTTP on loopback, the real workflow, both databases. What the
citizen is told is checked in the outbox (the dispatcher and a platform are tests/test_data_collection.py's).
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from adaldyk_bots.domain import InboundMessage
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import (
    Appeal,
    AppealEvent,
    AuditEvent,
    Conversation,
    DataRequest,
    Message,
    OutboxItem,
    StaffTask,
)
from tests.web_support import WebApp, create_user, csrf_of, load_units, login, seed_appeal, token_for

VALID_IIN = "900101300126"
WRONG_CHECK_DIGIT = "900101300127"
RU_SIGNAL = "Рядом с рекой Нура незаконная свалка, прошу принять меры."
APPLICANT = {
    "name": "Иванова Мария Петровна",
    "iin": VALID_IIN,
    "address": "г. Караганда, ул. Ерубаева, д. 5, кв. 3",
}


@pytest.fixture
def web(make_settings: Any) -> Any:
    with WebApp(make_settings()) as app:
        load_units(app.runtime.engine)
        engine = app.runtime.engine
        create_user(engine, "moder", "moderator", full_name="Мира Модератор")
        create_user(engine, "audit", "auditor")
        create_user(engine, "olga", "officer", "cerc_astana")
        yield app


def _page_client(web: Any, username: str = "moder") -> tuple[httpx.Client, str]:
    client = web.new_client()
    return client, login(client, username)


def _api(web: Any, username: str = "moder") -> httpx.Client:
    token = token_for(web.runtime.engine, username)
    return httpx.Client(base_url=f"{web.url}/api/v1", headers={"Authorization": f"Bearer {token}"})


def _appeal(web: Any, number: str) -> Appeal:
    with Session(web.runtime.engine) as s:
        return s.exec(select(Appeal).where(Appeal.number == number)).one()


def _outbox(web: Any, appeal_id: int | None) -> list[OutboxItem]:
    with Session(web.runtime.engine) as s:
        return list(
            s.exec(select(OutboxItem).where(OutboxItem.appeal_id == appeal_id).order_by(col(OutboxItem.id)))
        )


def _events(web: Any, appeal_id: int | None, kind: str) -> list[AppealEvent]:
    with Session(web.runtime.engine) as s:
        return list(
            s.exec(
                select(AppealEvent)
                .where(AppealEvent.appeal_id == appeal_id, AppealEvent.kind == kind)
                .order_by(col(AppealEvent.id))
            )
        )


def _audit(web: Any, action: str, subject: str) -> list[AuditEvent]:
    with Session(web.runtime.engine) as s:
        return list(
            s.exec(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.subject == subject))
        )


def _triage(client: httpx.Client, csrf: str, number: str, **form: str) -> str:
    """POST the page's triage form; the redirect's query (done=… or error=…)."""
    answer = client.post(
        f"/appeals/{number}/triage", data={**form, "csrf_token": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text[:300]
    return answer.headers["location"].split("?", 1)[-1].split("#")[0]


def _comment_signal(web: Any) -> str:
    """A signal from a public comment: a place where the bot cannot hold a dialogue."""
    post = secrets.token_hex(4)
    message = InboundMessage(
        channel="vk",
        account="7",
        chat_id=f"wall-7_{post}",
        message_key=secrets.token_hex(6),
        sender_id="501",
        sent_at=utcnow(),
        text="Почему вырубают рощу у озера? Ответьте публично.",
        kind="comment",
    )
    with unit_of_work(web.runtime.engine) as s:
        web.runtime.workflow.accept_message(s, message, raw_event_id=None)
    with Session(web.runtime.engine) as s:
        return s.exec(select(Appeal.number).order_by(col(Appeal.id).desc())).first() or ""


# --- informational ---------------------------------------------------------------------------------------


def test_informational_answer_on_the_page(web: Any) -> None:
    number = seed_appeal(web.runtime, chat=11, text=RU_SIGNAL)
    signal = _appeal(web, number)
    client, csrf = _page_client(web)
    page = client.get(f"/appeals/{number}?lang=ru").text
    assert 'id="triage"' in page and "Сортировка сигнала" in page

    assert _triage(client, csrf, number, decision="informational", text="Свалку убрали 3 декабря.") == (
        "error=t_reason_empty"
    )
    assert _triage(client, csrf, number, decision="informational", reason="не требует рассмотрения") == (
        "error=t_text_empty"
    )
    assert _appeal(web, number).status == "received"
    done = _triage(
        client, csrf, number, decision="informational", text="Свалку убрали 3 декабря.", reason="справка"
    )
    assert done == "done=t_info"

    after = _appeal(web, number)
    assert (after.status, after.triage, after.formal) == ("answered", "informational", False)
    [told] = [r for r in _outbox(web, signal.id) if r.key == f"triage:{signal.id}"]
    assert told.purpose == "reply"  # a person's words: the channel treats it as a reply
    assert (
        "Свалку убрали 3 декабря." in told.text
        and "информационный ответ" in told.text
        and number in told.text
    )
    [event] = _events(web, signal.id, "triage")
    assert event.actor == "user:moder"
    assert event.detail["decision"] == "informational" and event.detail["reason"] == "справка"
    [audited] = _audit(web, "appeal.triage", number)
    assert audited.actor == "user:moder" and audited.detail["decision"] == "informational"
    with Session(web.runtime.engine) as s:  # the answer is in the thread like a reply
        out = s.exec(select(Message).where(Message.appeal_id == signal.id, Message.direction == "out")).all()
    assert [m.external_key for m in out] == [f"triage:{signal.id}"]

    page = client.get(f"/appeals/{number}?lang=ru").text
    assert 'id="triage"' not in page  # no longer a signal
    assert "сортировка" in page and "информационный ответ" in page  # the history says what was decided
    again = _triage(client, csrf, number, decision="spam", reason="повторно")
    assert again == "error=t_not_signal"


# --- formal: the dialogue is started; the data entered on the page ------------------------------------------


def test_formal_starts_the_dialogue_in_the_citizens_chat(web: Any) -> None:
    number = seed_appeal(web.runtime, chat=12, text=RU_SIGNAL)
    signal = _appeal(web, number)
    client, csrf = _page_client(web)
    assert _triage(client, csrf, number, decision="formal") == "done=t_collect"

    after = _appeal(web, number)
    assert (after.status, after.triage) == ("received", "formal")  # a signal until the data are complete
    with Session(web.runtime.engine) as s:
        request = s.exec(select(DataRequest).where(DataRequest.appeal_id == signal.id)).one()
        conversation = s.get(Conversation, signal.conversation_id)
    assert request.step == "consent" and request.started_by == "user:moder"
    assert conversation is not None and conversation.collecting
    [first] = [r for r in _outbox(web, signal.id) if r.purpose == "collect"]
    assert first.key == f"collect:{request.id}:start"
    assert "официальное обращение" in first.text and "94-V" in first.text and "«да» или «нет»" in first.text

    page = client.get(f"/appeals/{number}?lang=ru").text
    assert 'data-collecting="consent"' in page
    assert _triage(client, csrf, number, decision="formal") == "error=t_busy"

    # The moderator enters the data after all (the citizen phoned): the dialogue stops, the appeal is made.
    done = _triage(client, csrf, number, decision="formal", consent="1", **APPLICANT)
    assert done == "done=t_formal"
    with Session(web.runtime.engine) as s:
        request = s.exec(select(DataRequest).where(DataRequest.appeal_id == signal.id)).one()
        conversation = s.get(Conversation, signal.conversation_id)
    assert request.cancel_reason == "staff" and request.answers == {}
    assert conversation is not None and not conversation.collecting


def test_formal_with_the_data_entered_on_the_page(web: Any) -> None:
    number = seed_appeal(web.runtime, chat=13, text=RU_SIGNAL)
    signal = _appeal(web, number)
    client, csrf = _page_client(web)
    refused = _triage(
        client, csrf, number, decision="formal", consent="1", **{**APPLICANT, "iin": WRONG_CHECK_DIGIT}
    )
    assert refused == "error=t_iin_checksum"
    page = client.get(f"/appeals/{number}?{refused}&lang=kk").text
    assert "ЖСН-нің бақылау цифры сәйкес келмейді" in page
    assert _triage(client, csrf, number, decision="formal", **APPLICANT) == "error=t_consent_missing"
    assert _triage(
        client, csrf, number, decision="formal", consent="1", **{**APPLICANT, "name": "Иванова"}
    ) == ("error=t_name_short")
    assert _triage(
        client, csrf, number, decision="formal", consent="1", **{**APPLICANT, "address": "Астана"}
    ) == ("error=t_address_short")
    with Session(web.runtime.engine) as s:
        assert s.exec(select(Appeal).where(Appeal.signal_id == signal.id)).first() is None

    assert _triage(client, csrf, number, decision="formal", consent="1", **APPLICANT) == "done=t_formal"
    closed = _appeal(web, number)
    assert (closed.status, closed.triage) == ("closed", "formal")
    with Session(web.runtime.engine) as s:
        formal = s.exec(select(Appeal).where(Appeal.signal_id == signal.id)).one()
    workflow = web.runtime.workflow
    assert formal.formal and formal.status == "registered" and formal.number != number
    assert (formal.applicant_name, formal.applicant_iin) == (APPLICANT["name"], VALID_IIN)
    assert formal.applicant_address == APPLICANT["address"] and formal.consent_at is not None
    assert formal.due_at == workflow.due_for(formal.registered_at)
    assert formal.registered_at == workflow.calendar.registration_time(formal.received_at)
    assert (formal.contact_id, formal.conversation_id, formal.language) == (
        signal.contact_id,
        signal.conversation_id,
        signal.language,
    )
    [registration] = [r for r in _outbox(web, formal.id) if r.purpose == "registration"]
    assert registration.key == f"notice:registration:{formal.id}" and formal.number in registration.text
    [told] = [r for r in _outbox(web, signal.id) if r.purpose == "triage"]
    assert formal.number in told.text and number in told.text
    [status] = _events(web, signal.id, "status")
    assert status.detail == {"from": "received", "to": "closed", "note": None, "formal_appeal": formal.number}
    assert _audit(web, "appeal.register", formal.number)[0].detail["signal"] == number
    # No plain status notice besides: the citizen is told by the triage and registration notices.
    assert not [r for r in _outbox(web, signal.id) if r.purpose == "status"]

    # Both pages show the link; the formal appeal's shows the applicant and the signal's words.
    signal_page = client.get(f"/appeals/{number}?lang=ru").text
    assert 'data-link="formal">' in signal_page and f'href="/appeals/{formal.number}"' in signal_page
    formal_page = client.get(f"/appeals/{formal.number}?lang=ru").text
    assert 'data-link="signal"' in formal_page and f'href="/appeals/{number}"' in formal_page
    assert VALID_IIN in formal_page and "Заявитель" in formal_page
    assert RU_SIGNAL in formal_page


def test_formal_where_no_dialogue_is_possible_needs_the_data(web: Any) -> None:
    number = _comment_signal(web)
    client, csrf = _page_client(web)
    page = client.get(f"/appeals/{number}?lang=en").text
    assert "This channel cannot hold a dialogue" in page
    assert "Ask the citizen for the data" not in page
    assert _triage(client, csrf, number, decision="formal") == "error=t_name_empty"
    assert _triage(
        client, csrf, number, decision="formal", consent="1", **{**APPLICANT, "iin": "90010130012"}
    ) == ("error=t_iin_length")
    assert _triage(client, csrf, number, decision="formal", consent="1", **APPLICANT) == "done=t_formal"
    signal = _appeal(web, number)
    with Session(web.runtime.engine) as s:
        formal = s.exec(select(Appeal).where(Appeal.signal_id == signal.id)).one()
        assert s.exec(select(DataRequest)).first() is None
    assert formal.status == "registered" and formal.applicant_iin == VALID_IIN


# --- forward and spam, through the API ------------------------------------------------------------


def test_forward_to_an_outside_body_through_the_api(web: Any) -> None:
    number = seed_appeal(web.runtime, chat=14, text="Браконьеры ловят рыбу сетями на Капшагае.")
    signal = _appeal(web, number)
    api = _api(web)
    missing = api.post(f"/appeals/{number}/triage", json={"decision": "forward", "reason": "рыболовство"})
    assert missing.status_code == 422 and missing.json()["code"] == "invalid_request"  # the schema says so
    no_reason = api.post(
        f"/appeals/{number}/triage", json={"decision": "forward", "body": {"code": "agriculture"}}
    )
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    bad_code = api.post(
        f"/appeals/{number}/triage",
        json={"decision": "forward", "reason": "x", "body": {"code": "Мин СХ", "name": "Министерство"}},
    )
    assert bad_code.status_code == 422
    # A code config/org.toml does not list is refused, naming the ones it does (and `other`).
    unknown = api.post(
        f"/appeals/{number}/triage",
        json={"decision": "forward", "reason": "x", "body": {"code": "moa", "name": "Министерство"}},
    )
    assert unknown.status_code == 409 and "agriculture" in unknown.json()["detail"]
    assert "other" in unknown.json()["detail"]
    nameless = api.post(
        f"/appeals/{number}/triage", json={"decision": "forward", "reason": "x", "body": {"code": "other"}}
    )
    assert nameless.status_code == 409 and "name" in nameless.json()["detail"]
    assert _appeal(web, number).status == "received"
    answer = api.post(
        f"/appeals/{number}/triage",
        json={
            "decision": "forward",
            "reason": "рыбное хозяйство в ведении МСХ",
            "body": {"code": "agriculture"},
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # The Russian name config/org.toml gives: the citizen wrote in Russian.
    ministry = "Министерство сельского хозяйства Республики Казахстан (Комитет рыбного хозяйства)"
    assert body["appeal"]["status"] == "forwarded" and body["appeal"]["forwarded_to"] == "agriculture"
    assert body["appeal"]["forwarded_to_name"] == ministry
    assert body["appeal"]["triage"] == "forward" and body["event"]["kind"] == "triage"
    [notice] = [r for r in _outbox(web, signal.id) if r.purpose == "forwarding"]
    assert notice.key == f"notice:forwarding:{signal.id}"
    assert ministry in notice.text and "рыбное хозяйство в ведении МСХ" in notice.text
    assert notice.text.startswith(f"Ваше обращение {number} не относится к компетенции")
    assert not [r for r in _outbox(web, signal.id) if r.purpose == "status"]
    [status] = _events(web, signal.id, "status")
    assert status.detail["to"] == "forwarded" and status.detail["body"] == "agriculture"
    assert _audit(web, "appeal.triage", number)[0].detail["body_name"] == ministry
    assert _audit(web, "appeal.forward", number)[0].detail["body"] == "agriculture"
    again = api.post(f"/appeals/{number}/triage", json={"decision": "spam", "reason": "x"})
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_spam_is_closed_without_a_word_to_the_sender(web: Any) -> None:
    number = seed_appeal(web.runtime, chat=15, text="Купите дешёвые часы!!! http://example.invalid")
    signal = _appeal(web, number)
    before = [r.key for r in _outbox(web, signal.id)]
    answer = _api(web).post(f"/appeals/{number}/triage", json={"decision": "spam", "reason": "реклама"})
    assert answer.status_code == 200, answer.text
    after = _appeal(web, number)
    assert (after.status, after.triage) == ("rejected", "spam")
    assert [r.key for r in _outbox(web, signal.id)] == before  # the acknowledgement only
    assert _events(web, signal.id, "triage")[0].detail == {"decision": "spam", "reason": "реклама"}
    assert _audit(web, "appeal.spam", number) and _audit(web, "appeal.triage", number)


def test_formal_through_the_api_with_the_data_and_the_refusals(web: Any) -> None:
    number = seed_appeal(web.runtime, chat=16, text=RU_SIGNAL)
    api = _api(web)
    wrong = api.post(
        f"/appeals/{number}/triage",
        json={"decision": "formal", "applicant": {**APPLICANT, "iin": WRONG_CHECK_DIGIT, "consent": True}},
    )
    # Well-formed, refused by the IIN's own rule: 409 with the field and the reason.
    assert wrong.status_code == 409 and wrong.json()["detail"] == "iin: refused (checksum)"
    name = api.post(
        f"/appeals/{number}/triage",
        json={"decision": "formal", "applicant": {**APPLICANT, "name": "Иванова 2 Мария", "consent": True}},
    )
    assert name.status_code == 409 and name.json()["detail"] == "name: refused (letters)"
    no_consent = api.post(
        f"/appeals/{number}/triage", json={"decision": "formal", "applicant": {**APPLICANT, "consent": False}}
    )
    assert no_consent.status_code == 422
    unknown = api.post(f"/appeals/{number}/triage", json={"decision": "maybe", "reason": "x"})
    assert unknown.status_code == 422
    # Officers and auditors do not triage; an officer does not even see an unassigned signal.
    assert (
        _api(web, "audit").post(f"/appeals/{number}/triage", json={"decision": "formal"}).status_code == 403
    )
    assert _api(web, "olga").post(f"/appeals/{number}/triage", json={"decision": "formal"}).status_code == 403
    done = api.post(
        f"/appeals/{number}/triage", json={"decision": "formal", "applicant": {**APPLICANT, "consent": True}}
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["appeal"]["status"] == "closed" and body["collecting"] is False
    formal = body["formal_appeal"]
    assert formal["formal"] is True and formal["signal"] == number and formal["status"] == "registered"
    detail = api.get(f"/appeals/{formal['number']}").json()
    assert detail["applicant"]["iin"] == VALID_IIN and detail["signal"] == number
    assert api.get(f"/appeals/{number}").json()["formal_appeal"] == formal["number"]

    dialogue = seed_appeal(web.runtime, chat=17, text=RU_SIGNAL)
    started = api.post(f"/appeals/{dialogue}/triage", json={"decision": "formal"})
    assert started.status_code == 200 and started.json()["collecting"] is True
    assert started.json()["formal_appeal"] is None


def test_a_phone_appeal_is_no_signal(web: Any) -> None:
    from adaldyk_bots.direct_intake import DirectAppeal, register_direct

    with unit_of_work(web.runtime.engine) as s:
        appeal = register_direct(
            s,
            web.runtime.workflow,
            DirectAppeal(
                channel="phone",
                text="Звонок: запах гари у ТЭЦ.",
                name="Иванов Иван",
                iin=VALID_IIN,
                consent=True,
            ),
            actor="user:moder",
            taken_by_id=None,
            now=utcnow(),
        )
        number = appeal.number
    answer = _api(web).post(f"/appeals/{number}/triage", json={"decision": "spam", "reason": "x"})
    assert answer.status_code == 409
    with Session(web.runtime.engine) as s:
        assert s.exec(select(StaffTask)).all()  # its registration notice is a call for staff, as before


# --- merge and reopen ---------------------------------------------------------------------------------------


def test_the_survivor_shows_the_merged_duplicates_words_to_those_who_may_see_them(web: Any) -> None:
    survivor = seed_appeal(
        web.runtime, chat=28, text="Свалка у реки Нура, пишу в Telegram.", unit_code="cerc_astana"
    )
    duplicate = seed_appeal(
        web.runtime, chat=29, text="Та же свалка у Нуры, пишу второй раз.", unit_code="cerc_karaganda"
    )
    client, csrf = _page_client(web)
    answer = client.post(
        f"/appeals/{duplicate}/merge",
        data={"into": survivor, "reason": "тот же заявитель", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and "done=merge" in answer.headers["location"]
    # The moderator reads one thread: the duplicate's words come with a link to where they were written.
    page = client.get(f"/appeals/{survivor}?lang=ru").text
    assert "Та же свалка у Нуры, пишу второй раз." in page
    assert f'data-merged-from="{duplicate}"' in page
    assert "пришло с объединённым дубликатом" in page
    # An officer of the survivor's unit sees it, but not the words of an appeal of another department.
    officer, _ = _page_client(web, "olga")
    own = officer.get(f"/appeals/{survivor}?lang=ru").text
    assert "Свалка у реки Нура, пишу в Telegram." in own
    assert "Та же свалка у Нуры" not in own and "data-merged-from" not in own


def test_merge_a_duplicate_and_reopen_it(web: Any) -> None:
    survivor = seed_appeal(web.runtime, chat=18, text="Свалка у реки Нура, первое сообщение.")
    duplicate = seed_appeal(web.runtime, chat=19, text="Свалка у реки Нура, снова пишу.")
    third = seed_appeal(web.runtime, chat=20, text="И я про ту же свалку.")
    client, csrf = _page_client(web)

    def merge(number: str, **form: str) -> str:
        answer = client.post(
            f"/appeals/{number}/merge", data={**form, "csrf_token": csrf}, follow_redirects=False
        )
        assert answer.status_code == 303
        return answer.headers["location"].split("?", 1)[-1].split("#")[0]

    assert 'id="merge"' in client.get(f"/appeals/{duplicate}?lang=ru").text
    assert merge(duplicate, into=survivor) == "error=merge_reason"
    assert merge(duplicate, into=duplicate, reason="дубль") == "error=merge_self"
    assert merge(duplicate, into="ADL-1999-000001", reason="дубль") == "error=merge_target"
    assert merge(duplicate, into=survivor, reason="то же место, тот же заявитель") == "done=merge"
    merged = _appeal(web, duplicate)
    kept = _appeal(web, survivor)
    assert merged.status == "merged" and merged.merged_into_id == kept.id
    [status] = _events(web, merged.id, "status")
    assert status.detail["to"] == "merged" and status.detail["into"] == survivor
    assert _events(web, kept.id, "merged_in")[0].detail["appeal"] == duplicate
    assert _audit(web, "appeal.merge", survivor)[0].detail["appeal"] == duplicate
    # The citizen of the duplicate is told, with the reason (a status notice).
    [told] = [r for r in _outbox(web, merged.id) if r.purpose == "status"]
    assert "то же место, тот же заявитель" in told.text

    page = client.get(f"/appeals/{survivor}?lang=ru").text
    assert f'<li data-link="merged"><a href="/appeals/{duplicate}">' in page
    assert 'data-link="merged-into"' in client.get(f"/appeals/{duplicate}").text
    # A merged appeal cannot take a merge in; the API says so too.
    api = _api(web)
    chained = api.post(f"/appeals/{third}/merge", json={"into": duplicate, "reason": "дубль"})
    assert chained.status_code == 409
    assert api.post(f"/appeals/{third}/merge", json={"into": third, "reason": "дубль"}).status_code == 409
    assert api.get(f"/appeals/{survivor}").json()["merged"] == [duplicate]

    # Reopened with its reason, it stands on its own again.
    assert api.post(f"/appeals/{duplicate}/status", json={"status": "reopened"}).status_code == 422
    reopened = api.post(f"/appeals/{duplicate}/status", json={"status": "reopened", "note": "разные места"})
    assert reopened.status_code == 200, reopened.text
    assert _appeal(web, duplicate).merged_into_id is None
    assert api.get(f"/appeals/{survivor}").json()["merged"] == []
    assert 'data-link="merged"' not in client.get(f"/appeals/{survivor}").text
    # A signal's status form does not offer "merged" as a plain status: it has its own form.
    plain = client.post(
        f"/appeals/{third}/status",
        data={"status": "merged", "reason": "x", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert "error=own_action" in plain.headers["location"]


def test_the_page_is_translated_with_the_triage_parts(web: Any) -> None:
    from adaldyk_bots.i18n import translations

    number = seed_appeal(web.runtime, chat=21, text=RU_SIGNAL)
    client, _csrf = _page_client(web)
    for lang in ("kk", "ru"):
        page = client.get(f"/appeals/{number}?lang={lang}").text
        tr = translations(lang).gettext
        for msgid in ("Triage of the signal", "Informational answer", "Forward to an outside body", "Spam"):
            assert tr(msgid) != msgid and tr(msgid) in page, (lang, msgid)
    assert csrf_of(page)
