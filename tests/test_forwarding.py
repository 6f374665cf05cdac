"""Forwarding to an outside body, R5 (forwarding.py): one action on the appeal page and in the JSON API, for a
signal and a registered appeal alike; the body chosen from config/org.toml or named as another
organisation; one notice naming it in the citizen's language; a bare status change refused. The real app
over HTTP on loopback, the real workflow, both databases; what the citizen is told is read in the outbox.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from adaldyk_bots import forwarding
from adaldyk_bots.domain import AppealStatus
from adaldyk_bots.errors import UseForwarding
from adaldyk_bots.org_config import load_org
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.inbound import OPEN_STATUSES
from adaldyk_bots.storage.models import Appeal, AppealEvent, AuditEvent, OutboxItem
from tests.web_support import WebApp, create_user, csrf_of, load_units, login, seed_appeal, token_for

KK_TEXT = "Көлде браконьерлер ау құрып, балық аулап жатыр. Шара қолдануыңызды сұраймын."
RU_TEXT = "Во дворе дома не вывозят мусор уже две недели, прошу принять меры."
VALID_IIN = "900101300126"
ADDRESS = "Алматы облысы, Қонаев қаласы, Абай көшесі, 12-үй"
AGRICULTURE_KK = "Қазақстан Республикасы Ауыл шаруашылығы министрлігі (Балық шаруашылығы комитеті)"


@pytest.fixture
def web(make_settings: Any) -> Any:
    with WebApp(make_settings()) as app:
        load_units(app.runtime.engine)
        create_user(app.runtime.engine, "moder", "moderator", full_name="Мира Модератор")
        create_user(app.runtime.engine, "olga", "officer", "cerc_astana")
        yield app


def _api(web: Any) -> httpx.Client:
    token = token_for(web.runtime.engine, "moder")
    return httpx.Client(base_url=f"{web.url}/api/v1", headers={"Authorization": f"Bearer {token}"})


def _registered(web: Any, chat: int, text: str) -> Appeal:
    """A citizen's message registered as a formal appeal by the moderator's triage (the data typed in)."""
    number = seed_appeal(web.runtime, chat=chat, text=text)
    applicant = {"name": "Сейтқали Айгерім Нұрланқызы", "iin": VALID_IIN, "address": ADDRESS, "consent": True}
    triaged = _api(web).post(f"/appeals/{number}/triage", json={"decision": "formal", "applicant": applicant})
    assert triaged.status_code == 200, triaged.text
    formal = _appeal(web, triaged.json()["formal_appeal"]["number"])
    assert (formal.status, formal.formal) == ("registered", True)
    return formal


def _appeal(web: Any, number: str) -> Appeal:
    with Session(web.runtime.engine) as s:
        return s.exec(select(Appeal).where(Appeal.number == number)).one()


def _outbox(web: Any, appeal_id: int | None, purpose: str) -> list[OutboxItem]:
    with Session(web.runtime.engine) as s:
        return list(
            s.exec(
                select(OutboxItem)
                .where(OutboxItem.appeal_id == appeal_id, OutboxItem.purpose == purpose)
                .order_by(col(OutboxItem.id))
            )
        )


def _post(client: httpx.Client, csrf: str, number: str, action: str, **form: str) -> str:
    answer = client.post(
        f"/appeals/{number}/{action}", data={**form, "csrf_token": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text[:300]
    return answer.headers["location"].split("?", 1)[-1].split("#")[0]


def test_the_addressee_is_named_in_the_citizens_language(make_settings: Any) -> None:
    bodies = load_org(make_settings().config_dir / "org.toml").outside_bodies
    listed = forwarding.addressee(bodies, "agriculture", "ignored")
    assert listed.name("kk") == AGRICULTURE_KK
    assert listed.name("ru").startswith("Министерство сельского хозяйства")
    assert listed.name("en").startswith("Ministry of Agriculture")
    other = forwarding.addressee(bodies, "other", "  ТОО «Астана Тазалық»  ")
    assert (other.code, other.name("kk"), other.name("en")) == (
        "other",
        "ТОО «Астана Тазалық»",
        "ТОО «Астана Тазалық»",
    )
    for code, name, field, reason in [
        ("", "", "body", "missing"),
        ("moa", "x", "body", "code"),
        ("other", " ", "body", "name"),
    ]:
        with pytest.raises(forwarding.ForwardRefused) as refused:
            forwarding.addressee(bodies, code, name)
        assert (refused.value.field, refused.value.reason) == (field, reason)


def test_a_registered_appeal_is_forwarded_on_its_page_and_the_citizen_reads_where(web: Any) -> None:
    appeal = _registered(web, 61, KK_TEXT)
    number = appeal.number
    client = web.new_client()
    csrf = login(client, "moder")
    page = client.get(f"/appeals/{number}?lang=kk").text
    csrf = csrf_of(page)
    # The status form offers no bare "forwarded"; the forwarding form lists org.toml's bodies in the appeal's
    # language (Kazakh) and another organisation.
    status_form = re.search(r'<select id="status-select" name="status">(.*?)</select>', page, re.S)
    assert status_form is not None and 'value="forwarded"' not in status_form.group(1)
    assert f'action="/appeals/{number}/forward"' in page and 'id="forward"' in page
    assert f'<option value="agriculture">{AGRICULTURE_KK}</option>' in page
    assert '<option value="other">' in page

    # A bare status change, posted anyway, is refused with the message naming the forwarding form.
    assert _post(client, csrf, number, "status", status="forwarded", reason="не наше") == "error=forward_use"
    assert "Жіберу өз нысанымен жасалады" in client.get(f"/appeals/{number}?lang=kk&error=forward_use").text
    # What the law asks of it: a reason, a body of the list, or another organisation's name.
    assert (
        _post(client, csrf, number, "forward", body_code="agriculture", reason=" ") == "error=t_reason_empty"
    )
    assert _post(client, csrf, number, "forward", body_code="moa", reason="x") == "error=t_body_code"
    assert _post(client, csrf, number, "forward", body_code="other", reason="x") == "error=t_body_name"
    assert _post(client, csrf, number, "forward", reason="x") == "error=t_body_missing"
    assert _appeal(web, number).status == "registered" and not _outbox(web, appeal.id, "forwarding")

    reason = "Балық аулау — Ауыл шаруашылығы министрлігінің құзыреті"
    status_notices = _outbox(web, appeal.id, "status")
    assert _post(client, csrf, number, "forward", body_code="agriculture", reason=reason) == "done=forward"
    after = _appeal(web, number)
    assert (after.status, after.forwarded_to, after.forwarded_to_name) == (
        "forwarded",
        "agriculture",
        AGRICULTURE_KK,
    )
    assert after.triage is None  # a formal appeal: no triage decision of its own
    # One notice, in Kazakh, naming the body and the reason; no generic status message besides.
    [notice] = _outbox(web, appeal.id, "forwarding")
    assert notice.key == f"notice:forwarding:{appeal.id}"
    assert notice.text.startswith(f"{number} өтінішіңіз Экология министрлігінің құзыретіне жатпайды")
    assert AGRICULTURE_KK in notice.text and reason in notice.text
    assert _outbox(web, appeal.id, "status") == status_notices
    with Session(web.runtime.engine) as s:
        status = s.exec(
            select(AppealEvent)
            .where(AppealEvent.appeal_id == appeal.id, AppealEvent.kind == "status")
            .order_by(col(AppealEvent.id).desc())
        ).first()
        audited = s.exec(select(AuditEvent).where(AuditEvent.action == "appeal.forward")).one()
    assert (
        status is not None and status.detail["to"] == "forwarded" and status.detail["body"] == "agriculture"
    )
    assert audited.subject == number and audited.detail["reason"] == reason
    # R5's clock stops as before: a forwarded appeal is not open, and its forwarding due time is kept.
    assert AppealStatus.FORWARDED.value not in OPEN_STATUSES and after.forward_due_at == appeal.forward_due_at
    shown = client.get(f"/appeals/{number}?lang=kk").text
    assert "сигнал, тіркелмеген" not in shown  # registered: the page says so
    assert f'data-forwarded-to="agriculture">{AGRICULTURE_KK}</span>' in shown  # the history names it


def test_the_api_forwards_to_another_organisation_and_again_after_a_reopening(web: Any) -> None:
    appeal = _registered(web, 62, RU_TEXT)
    number = appeal.number
    api = _api(web)
    # "forwarded" is not a status the status route takes (its own action, like merge and extend).
    bare = api.post(f"/appeals/{number}/status", json={"status": "forwarded", "note": "не наше"})
    assert bare.status_code == 422
    no_name = api.post(
        f"/appeals/{number}/forward", json={"body": {"code": "other"}, "reason": "вывоз мусора"}
    )
    # Well-formed but nothing to forward to: 409, as the other refusals of what a request names.
    assert no_name.status_code == 409 and "name" in no_name.json()["detail"]
    unknown = api.post(f"/appeals/{number}/forward", json={"body": {"code": "moa"}, "reason": "x"})
    assert unknown.status_code == 409 and "agriculture" in unknown.json()["detail"]
    no_reason = api.post(f"/appeals/{number}/forward", json={"body": {"code": "akimat"}})
    assert no_reason.status_code == 422
    body = {"body": {"code": "other", "name": "ТОО «Тазалық-Сервис»"}, "reason": "вывоз мусора во дворах"}
    done = api.post(f"/appeals/{number}/forward", json=body)
    assert done.status_code == 200, done.text
    out = done.json()["appeal"]
    assert (out["status"], out["forwarded_to"], out["forwarded_to_name"]) == (
        "forwarded",
        "other",
        "ТОО «Тазалық-Сервис»",
    )
    assert done.json()["event"]["detail"]["body_name"] == "ТОО «Тазалық-Сервис»"
    twice = api.post(f"/appeals/{number}/forward", json=body)
    assert twice.status_code == 409  # forwarded -> forwarded is no step of the table
    # Reopened and forwarded again, to a listed body: a second notice, numbered, naming the new body.
    assert (
        api.post(f"/appeals/{number}/status", json={"status": "reopened", "note": "ошибка"}).status_code
        == 200
    )
    again = api.post(
        f"/appeals/{number}/forward", json={"body": {"code": "akimat"}, "reason": "благоустройство"}
    )
    assert again.status_code == 200, again.text
    first, second = _outbox(web, appeal.id, "forwarding")
    assert first.key == f"notice:forwarding:{appeal.id}" and second.key == f"notice:forwarding:{appeal.id}:2"
    assert "ТОО «Тазалық-Сервис»" in first.text and "Местный исполнительный орган (акимат)" in second.text
    assert _appeal(web, number).forwarded_to == "akimat"


def test_the_core_refuses_a_forwarding_without_its_body(web: Any) -> None:
    appeal = _registered(web, 63, RU_TEXT)
    with unit_of_work(web.runtime.engine) as s, pytest.raises(UseForwarding) as refused:
        found = s.get(Appeal, appeal.id)
        assert found is not None
        web.runtime.workflow.change_status(s, found, "forwarded", actor="system", note="не наше")
    assert "forward action" in str(refused.value)
    assert _appeal(web, appeal.number).status == "registered"


def test_a_signal_is_forwarded_through_the_same_form_as_its_triage(web: Any) -> None:
    number = seed_appeal(web.runtime, chat=64, text=RU_TEXT, unit_code="cerc_astana")
    signal = _appeal(web, number)
    officer = web.new_client()
    officer_csrf = login(officer, "olga")
    # A signal's forwarding is its triage: the project office's moderators decide it, not the unit's officer.
    assert f'action="/appeals/{number}/forward"' not in officer.get(f"/appeals/{number}").text
    assert _post(officer, officer_csrf, number, "forward", body_code="akimat", reason="x") == "error=t_role"
    assert _appeal(web, number).status == "received"
    client = web.new_client()
    csrf = login(client, "moder")
    page = client.get(f"/appeals/{number}?lang=ru").text
    assert page.count(f'action="/appeals/{number}/forward"') == 1  # in the triage card, once
    # Staff read it as the citizen does: a signal received (and acknowledged as such), not registered.
    assert "сигнал, не зарегистрирован" in page and "сообщение получено (сигнал)" in page
    assert "подтверждение получения" in page and "обращение зарегистрировано" not in page
    assert (
        _post(client, csrf, number, "forward", body_code="akimat", reason="благоустройство двора")
        == "done=t_forward"
    )
    after = _appeal(web, number)
    assert (after.status, after.triage, after.forwarded_to) == ("forwarded", "forward", "akimat")
    [notice] = _outbox(web, signal.id, "forwarding")
    assert "Местный исполнительный орган (акимат)" in notice.text and "благоустройство двора" in notice.text
