"""Every page of the workspace in Kazakh and in Russian leaves no English msgid on the screen (issue 7), the
pages walked from the app's routes so that those of later issues are checked too: triage and linked
appeals, routing, the four eyes and /approvals, /notices, /tasks, direct intake and its receipt, the
admin's pages. The appeals are made so that each box shows: a signal awaiting triage, a formal appeal
with a draft waiting for its head, an appeal taken by phone with its call task and receipt."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlmodel import Session, select

from adaldyk_bots.i18n import read_catalog, translations
from adaldyk_bots.storage.models import Appeal, OutboxItem
from tests.answers_support import make_formal, seed_org
from tests.test_appeal_pages import _has_word, _visible_text
from tests.web_support import WebApp, create_user, load_units, login, seed_appeal

# Not pages a person reads: a file, a stream, a spreadsheet (its headers: test_inbox_pages), a PDF (the
# receipt is read as its print page, ?format=html), and the citizens' own pages (test_public_form).
NOT_PAGES = (
    "/api/",
    "/static/",
    "/public/",
    "/events/inbox",
    "/appeals.csv",
    "/healthz",
    "/openapi.json",
    "/docs",
    "/redoc",
)
QUERY = {
    "/appeals/{number}/receipt": "format=html",
    "/appeals/{number}/reply-preview": "text=Жауап",
}


@dataclass
class Pages:
    web: WebApp
    numbers: dict[str, str]  # signal, formal (a draft waits for its head), phone (taken by phone)
    delivery: str

    def templates(self) -> list[str]:
        return sorted(
            {
                context.path
                for context in iter_route_contexts(self.web.app.routes)
                if isinstance(context.original_route, APIRoute)
                and "GET" in (context.methods or ())
                and context.path
                and not context.path.startswith(NOT_PAGES)
                and "/attachments/" not in context.path
            }
        )

    def paths(self, template: str) -> list[str]:
        numbers = self.numbers.values() if "{number}" in template else [""]
        out = []
        for number in numbers:
            path = template.replace("{number}", number).replace("{outbox_id}", self.delivery)
            if "{number}" in template and "{outbox_id}" in template and number != self.numbers["signal"]:
                continue  # the delivery belongs to the signal's appeal
            out.append(path + ("?" + QUERY[template] if template in QUERY else ""))
        return out


@pytest.fixture
def pages(make_settings: Any) -> Iterator[Pages]:
    with WebApp(make_settings(phone_line="+7 7172 74-08-00")) as web:
        engine = web.runtime.engine
        load_units(engine)
        org = seed_org(engine)
        create_user(engine, "admin", "admin", full_name="Әкімші")
        create_user(engine, "moder", "moderator", full_name="Мира Модератор")
        # A signal (R12: awaiting triage) that names a region: routing suggestions and the triage form.
        signal = seed_appeal(web.runtime, chat=1, text="Алматыда өзенге қоқыс төгіліп жатыр, шара қолданыңыз")
        formal = seed_appeal(web.runtime, chat=2, text="Завод сбрасывает отходы в реку, прошу принять меры.")
        with Session(engine) as s:
            formal_id = s.exec(select(Appeal.id).where(Appeal.number == formal)).one()
            signal_id = s.exec(select(Appeal.id).where(Appeal.number == signal)).one()
            delivery = s.exec(select(OutboxItem.id).where(OutboxItem.appeal_id == signal_id)).first()
        assert formal_id is not None and delivery is not None
        make_formal(engine, formal_id, org.department)
        with web.new_client() as officer:
            csrf = login(officer, "t_officer")
            draft = officer.post(
                f"/appeals/{formal}/answer",
                data={"text": "Тексеру жүргізілді.", "csrf_token": csrf},
                follow_redirects=False,
            )
            assert draft.status_code == 303 and "done=draft" in draft.headers["location"], draft.text[:300]
        with web.new_client() as moder:
            csrf = login(moder, "moder")
            taken = moder.post(
                "/appeals/new",
                data={
                    "csrf_token": csrf,
                    "channel": "phone",
                    "kind": "complaint",
                    "text": "Өзен жағасына қоқыс төгіліп жатыр.",
                    "name": "Серікбаев Нұрлан Өмірұлы",
                    "email": "nurlan@example.kz",  # e-mail is off here: a call task instead of the notice
                    "consent": "1",
                },
                follow_redirects=False,
            )
            assert taken.status_code == 303, taken.text[:2000]
        phone = taken.headers["location"].removeprefix("/appeals/").split("?")[0]
        yield Pages(web, {"signal": signal, "formal": formal, "phone": phone}, str(delivery))


def english_left(page: str, lang: str) -> list[str]:
    """The English msgids (translated in `lang`) still shown on the page."""
    # An address is no sentence: "/public/status" on the receipt (without PUBLIC_URL, a path alone).
    text = re.sub(r"(?:https?://|(?<!\w)/)[\w/.:?=&%-]+", " ", _visible_text(page))
    tr = translations(lang)
    return sorted(
        m.id
        for m in read_catalog("en")
        if isinstance(m.id, str) and len(m.id) > 3 and tr.gettext(m.id) != m.id and _has_word(text, m.id)
    )


def test_every_workspace_page_in_kazakh_and_russian_has_no_english_left(pages: Pages) -> None:
    templates = pages.templates()
    # The walk sees the pages of later issues (were a router missing, it would check nothing).
    for expected in ("/", "/appeals/{number}", "/approvals", "/notices", "/tasks", "/appeals/new"):
        assert expected in templates, expected
    assert "/login" in templates  # read logged out, below; logged in it sends people home
    templates.remove("/login")
    seen: dict[str, set[str]] = {}
    problems: list[str] = []
    # The head sees the draft waiting for them (the box, /approvals, their notice), the admin the admin's
    # pages and the log, the moderator the triage and the corruption-report form.
    for username in ("t_dhead", "moder", "admin"):
        with pages.web.new_client() as client:
            login(client, username)
            for lang in ("kk", "ru"):
                client.get(f"/?lang={lang}")  # remembered for the pages that follow
                for template in templates:
                    for path in pages.paths(template):
                        answer = client.get(path)
                        if answer.status_code in (403, 404):  # an admin's page; the officer's scope
                            continue
                        assert answer.status_code == 200, (username, path, answer.status_code)
                        # The receipt is both languages at once (each half has its own lang).
                        if template != "/appeals/{number}/receipt":
                            assert f'<html lang="{lang}"' in answer.text or "<html" not in answer.text, path
                        left = english_left(answer.text, lang)
                        if left:
                            problems.append(f"{username} {lang} {path}: {left}")
                        seen.setdefault(path, set()).add(username)
    assert not problems, "English left:\n" + "\n".join(problems)
    # Every page was read by someone, and the boxes the appeals were made for were on them.
    every = {path for template in templates for path in pages.paths(template)}
    assert set(seen) == every, every - set(seen)
    with pages.web.new_client() as client:
        login(client, "t_dhead")
        box = client.get(f"/appeals/{pages.numbers['formal']}?lang=kk").text
        assert f'action="/appeals/{pages.numbers["formal"]}/answer/approve"' in box
        assert pages.numbers["formal"] in client.get("/approvals").text
        notices = client.get("/notices?lang=kk").text
        assert (
            'id="notice-' in notices and "жауап сіздің бекітуіңізді күтуде" in notices
        )  # named, not "approval"
    with pages.web.new_client() as client:
        login(client, "moder")
        signal = client.get(f"/appeals/{pages.numbers['signal']}").text
        assert 'id="triage"' in signal and 'id="routing"' in signal
        phone = client.get(f"/appeals/{pages.numbers['phone']}").text
        assert "receipt" in phone and "data-task=" in phone
        assert "data-task=" in client.get("/tasks").text


def test_the_login_form_in_kazakh_and_russian_has_no_english_left(pages: Pages) -> None:
    for lang in ("kk", "ru"):
        with httpx.Client(base_url=pages.web.url) as anonymous:
            page = anonymous.get(f"/login?lang={lang}")
            assert page.status_code == 200 and f'<html lang="{lang}"' in page.text
            assert not english_left(page.text, lang), lang
            assert re.search(r'name="csrf_token"', page.text)
