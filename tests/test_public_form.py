"""The ministry web-site form over real HTTP (the real app on loopback, a real database): a Kazakh appeal
registered with its files, its number and code; CSRF without a session; the honeypot, the time check
and the per-address limit each refused with a message and the text kept; IIN errors in the page's
language; file limits and types by their bytes; the status look-up (no oracle, rate limited); the
uploaded file served to a moderator and a 404 to an officer of another unit; the frame-ancestors CSP."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
from sqlmodel import Session, col, select

from adaldyk_bots.i18n import translations
from adaldyk_bots.iin import check_digit
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import (
    Appeal,
    AppealNote,
    AuditEvent,
    Message,
    OutboxItem,
    PublicReceipt,
    StaffTask,
    Upload,
)
from tests.faults import database_away
from tests.standin_connector import StandInConnector
from tests.web_support import WebApp, create_user, csrf_of, load_units, login

KK_TEXT = "Өзен жағасында заңсыз ағаш кесіліп жатыр, тексеруіңізді сұраймын."
UNIT_A = "cerc_astana"
UNIT_B = "cerc_almaty_city"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64


def valid_iin() -> str:
    first = "900101300123"[:11]
    digit = check_digit(first)
    assert digit is not None
    return first + str(digit)


@pytest.fixture
def web(make_settings: Any) -> Iterator[WebApp]:
    settings = make_settings(
        public_max_file_bytes=64 * 1024,
        public_max_files_bytes=100 * 1024,
        public_submits_per_hour=3,
        public_lookups_per_hour=6,
        public_embed_origins="https://www.gov.kz",
    )
    with WebApp(settings) as app:
        load_units(app.runtime.engine, app.settings)
        yield app


def _form(client: httpx.Client, path: str = "/public/appeal?lang=kk") -> dict[str, str]:
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    issued = re.search(r'name="issued" value="([^"]+)"', page.text)
    assert issued is not None
    return {"csrf_token": csrf_of(page.text), "issued": issued.group(1)}


def _fields(**extra: str) -> dict[str, str]:
    values = {
        "kind": "complaint",
        "text": KK_TEXT,
        "answer_by": "email",
        "email": "aigul@example.kz",
        "consent": "yes",
        "website": "",
    }
    values.update(extra)
    return values


def _send(
    web: WebApp,
    client: httpx.Client,
    tokens: dict[str, str],
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
    **extra: str,
) -> httpx.Response:
    return client.post(
        "/public/appeal?lang=kk", data={**tokens, **_fields(**extra)}, files=files or None, timeout=20
    )


def _submitted(web: WebApp, client: httpx.Client, **extra: Any) -> httpx.Response:
    tokens = _form(client)
    web.clock.advance(seconds=30)  # a person takes a while to write
    return _send(web, client, tokens, **extra)


def _number_and_code(answer: httpx.Response) -> tuple[str, str]:
    number = re.search(r'id="appeal-number">([^<]+)<', answer.text)
    code = re.search(r'id="appeal-code" class="code">([^<]+)<', answer.text)
    assert number and code, answer.text[:2000]
    return number.group(1), code.group(1)


def _kk(message: str) -> str:
    return html.escape(translations("kk").gettext(message), quote=False)


def test_a_kazakh_appeal_with_files_is_registered_with_a_number_and_a_code(web: WebApp) -> None:
    client = web.new_client()
    answer = _submitted(
        web,
        client,
        files=[
            ("attachment", ("схема.pdf", PDF, "application/pdf")),
            ("attachment", ("photo.png", PNG, "image/png")),
        ],
        name="Айгүл Серікқызы",
        iin=valid_iin(),
    )
    assert answer.status_code == 200, answer.text[:2000]
    assert '<html lang="kk">' in answer.text
    number, code = _number_and_code(answer)
    with Session(web.runtime.engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        assert (appeal.channel, appeal.status, appeal.category) == ("web", "registered", "complaint")
        assert appeal.formal and appeal.consent_at is not None
        assert appeal.applicant_iin == valid_iin() and appeal.applicant_email == "aigul@example.kz"
        receipt = s.get(PublicReceipt, appeal.id)
        assert receipt is not None and code.replace("-", "") not in receipt.code_sha256
        message = s.exec(select(Message).where(Message.appeal_id == appeal.id)).one()
        assert message.text == KK_TEXT
        kinds = [(a["kind"], a["name"], a["mime_type"], a["size"]) for a in message.attachments]
        assert kinds == [
            ("document", "схема.pdf", "application/pdf", len(PDF)),
            ("photo", "photo.png", "image/png", len(PNG)),
        ]
        rows = s.exec(select(Upload).where(Upload.appeal_id == appeal.id).order_by(col(Upload.id))).all()
        assert [r.data for r in rows] == [PDF, PNG]
        assert [a["file_id"] for a in message.attachments] == [f"upload:{r.id}" for r in rows]
        # E-mail is off in this deployment: the registration notice is a staff task, never nothing.
        task = s.exec(select(StaffTask).where(StaffTask.appeal_id == appeal.id)).one()
        assert task.kind == "call_citizen" and number in task.text
        actions = s.exec(select(AuditEvent.action).where(AuditEvent.subject == number)).all()
        assert {"appeal.register", "public.appeal"} <= set(actions)


def test_phone_and_messenger_answers_are_stored_and_told_to_staff(web: WebApp) -> None:
    client = web.new_client()
    answer = _submitted(web, client, answer_by="messenger", email="", messenger="Telegram @aigul_kz")
    number, _code = _number_and_code(answer)
    with Session(web.runtime.engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        receipt = s.get(PublicReceipt, appeal.id)
        assert receipt is not None and (receipt.answer_by, receipt.messenger) == (
            "messenger",
            "Telegram @aigul_kz",
        )
        note = s.exec(select(AppealNote).where(AppealNote.appeal_id == appeal.id)).one()
        assert "Telegram @aigul_kz" in note.text
        assert s.exec(select(StaffTask).where(StaffTask.appeal_id == appeal.id)).one().kind == "call_citizen"


def test_csrf_is_refused_without_a_token_and_the_text_is_kept(web: WebApp) -> None:
    client = web.new_client()
    tokens = _form(client)
    web.clock.advance(seconds=30)
    answer = client.post("/public/appeal?lang=kk", data={**_fields(), "issued": tokens["issued"]})
    assert answer.status_code == 403
    assert html.escape(KK_TEXT, quote=False) in answer.text
    stranger = web.new_client()  # no cookie, no token, another site's origin
    forged = stranger.post(
        "/public/appeal?lang=kk", data={**_fields(), **tokens}, headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    with Session(web.runtime.engine) as s:
        assert s.exec(select(Appeal)).first() is None


def test_a_forged_token_is_refused_even_from_our_origin_and_two_tabs_both_go_through(web: WebApp) -> None:
    client = web.new_client()
    tokens = _form(client)
    web.clock.advance(seconds=30)
    nonce, _, mac = tokens["csrf_token"].partition(".")
    forged = {**tokens, "csrf_token": f"{nonce}x.{mac}"}
    assert _send(web, client, forged).status_code == 403
    first_tab = _form(client)
    client.cookies.clear()
    second_tab = _form(client)  # a second tab's page set a new cookie
    web.clock.advance(seconds=30)
    older = client.post(
        "/public/appeal?lang=kk", data={**first_tab, **_fields()}, headers={"Origin": web.url}
    )
    assert older.status_code == 200, older.text[:500]
    assert _send(web, client, second_tab).status_code == 200


def test_an_embedded_form_without_our_cookie_is_taken_from_our_own_origin(web: WebApp) -> None:
    framed = web.new_client()
    tokens = _form(framed, "/public/appeal?lang=ru&embed=1")
    framed.cookies.clear()  # a browser withholds a third-party iframe's cookie
    web.clock.advance(seconds=30)
    answer = framed.post(
        "/public/appeal?lang=ru&embed=1", data={**tokens, **_fields()}, headers={"Origin": web.url}
    )
    assert answer.status_code == 200, answer.text[:1500]
    _number_and_code(answer)


def test_the_honeypot_refuses_with_a_message_and_keeps_the_text(web: WebApp) -> None:
    client = web.new_client()
    answer = _submitted(web, client, website="http://spam.example")
    assert answer.status_code == 422
    assert html.escape(KK_TEXT, quote=False) in answer.text
    assert 'name="website" value=""' in answer.text
    with Session(web.runtime.engine) as s:
        assert s.exec(select(Appeal)).first() is None


def test_a_form_sent_too_fast_is_refused_and_the_same_form_goes_through_later(web: WebApp) -> None:
    client = web.new_client()
    tokens = _form(client)
    answer = _send(web, client, tokens)
    assert answer.status_code == 422
    assert html.escape(KK_TEXT, quote=False) in answer.text
    assert 'id="refusal"' in answer.text
    again = {"csrf_token": csrf_of(answer.text), "issued": tokens["issued"]}
    assert f'value="{tokens["issued"]}"' in answer.text  # the stamp of when it was first shown
    web.clock.advance(seconds=10)
    assert _send(web, client, again).status_code == 200


def test_an_altered_time_stamp_is_refused(web: WebApp) -> None:
    client = web.new_client()
    tokens = _form(client)
    seconds, _, mac = tokens["issued"].partition(".")
    tokens["issued"] = f"{int(seconds) - 3600}.{mac}"
    assert _send(web, client, tokens).status_code == 403


def test_the_per_address_limit_refuses_the_fourth_appeal_with_a_message(web: WebApp) -> None:
    client = web.new_client()
    for _ in range(3):
        assert _submitted(web, client).status_code == 200
    refused = _submitted(web, client)
    assert refused.status_code == 429
    assert html.escape(KK_TEXT, quote=False) in refused.text
    with Session(web.runtime.engine) as s:
        assert len(s.exec(select(Appeal)).all()) == 3


def test_a_wrong_iin_says_what_is_wrong_next_to_the_field_in_the_page_language(web: WebApp) -> None:
    client = web.new_client()
    good = valid_iin()
    wrong = good[:11] + str((int(good[11]) + 1) % 10)
    answer = _submitted(web, client, iin=wrong)
    assert answer.status_code == 422
    message = _kk("The last digit of this IIN does not match the others: check it for a typo.")
    assert f'<p class="field-error" id="iin-error">{message}</p>' in answer.text
    assert 'aria-describedby="iin-hint iin-error" aria-invalid="true"' in answer.text
    assert f'<a href="#iin">{message}</a>' in answer.text  # the summary links to the field
    dated = _submitted(web, client, iin="991331300123")
    assert (
        _kk("The first six digits of an IIN are a birth date (YYMMDD); this date does not exist.")
        in dated.text
    )


def test_required_fields_and_the_consent_are_checked(web: WebApp) -> None:
    client = web.new_client()
    answer = _submitted(web, client, kind="", text="", consent="", answer_by="phone", email="")
    assert answer.status_code == 422
    for msgid in (
        "Choose the kind of appeal.",
        "Write the text of the appeal.",
        "Give the phone number for the answer.",
        "Without your consent to the processing of personal data we cannot accept the appeal.",
    ):
        assert _kk(msgid) in answer.text


def test_files_over_the_limit_of_the_wrong_kind_or_renamed_are_refused(web: WebApp) -> None:
    client = web.new_client()
    big = PDF + b"0" * (65 * 1024)
    answer = _submitted(
        web,
        client,
        files=[
            ("attachment", ("big.pdf", big, "application/pdf")),
            ("attachment", ("tool.pdf", ELF, "application/pdf")),
            ("attachment", ("photo.pdf", PNG, "application/pdf")),
        ],
    )
    assert answer.status_code == 422
    text = answer.text
    limit = _kk("{n} KB").format(n=64)
    assert (
        html.escape(_kk("The file {name} is larger than {limit}.").format(name="big.pdf", limit=limit))
        in text
    )
    assert "tool.pdf" in text and "photo.pdf" in text
    assert html.escape(KK_TEXT, quote=False) in text
    assert _kk("Please choose your files again: a browser never keeps them in a returned form.") in text
    with Session(web.runtime.engine) as s:
        assert s.exec(select(Upload)).first() is None and s.exec(select(Appeal)).first() is None


def test_a_request_over_the_general_body_limit_still_gets_the_form_back(web: WebApp) -> None:
    client = web.new_client()
    huge = PDF + b"0" * (5 * 1024 * 1024)  # over ADALDYK_MAX_BODY_BYTES (4 MiB), under the form's own
    answer = _submitted(web, client, files=[("attachment", ("scan.pdf", huge, "application/pdf"))])
    assert answer.status_code == 422
    assert html.escape(KK_TEXT, quote=False) in answer.text


def test_status_look_up_shows_progress_and_a_wrong_code_is_the_same_as_an_unknown_number(web: WebApp) -> None:
    client = web.new_client()
    number, code = _number_and_code(_submitted(web, client))
    found = client.get("/public/status", params={"number": number, "code": code.lower(), "lang": "kk"})
    assert found.status_code == 200
    assert _kk("Registered") in found.text and number in found.text
    assert KK_TEXT not in found.text and "aigul@example.kz" not in found.text

    def body(answer: httpx.Response) -> str:
        return answer.text.replace(html.escape(number), "N").replace("ADL-2020-999999", "N")

    wrong_code = client.get(
        "/public/status", params={"number": number, "code": "ABCD-EFGH-JKMN", "lang": "kk"}
    )
    unknown = client.get("/public/status", params={"number": "ADL-2020-999999", "code": code, "lang": "kk"})
    assert wrong_code.status_code == unknown.status_code == 404
    assert body(wrong_code) == body(unknown)
    for _ in range(3):
        client.get("/public/status", params={"number": number, "code": code})
    limited = client.get("/public/status", params={"number": number, "code": code})
    assert limited.status_code == 429


def test_the_uploaded_file_is_served_to_a_moderator_and_hidden_from_another_unit(web: WebApp) -> None:
    engine = web.runtime.engine
    create_user(engine, "moder", "moderator")
    create_user(engine, "astana", "officer", UNIT_A)
    create_user(engine, "almaty", "officer", UNIT_B)
    citizen = web.new_client()
    number, _code = _number_and_code(
        _submitted(web, citizen, files=[("attachment", ("акт.pdf", PDF, "application/pdf"))])
    )
    with Session(engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        message = s.exec(select(Message).where(Message.appeal_id == appeal.id)).one()
    with unit_of_work(engine) as s:
        row = s.exec(select(Appeal).where(Appeal.number == number)).one()
        web.runtime.workflow.assign_unit(s, row, UNIT_A, actor="system")
    path = f"/appeals/{number}/messages/{message.id}/attachments/0"
    moderator = web.new_client()
    login(moderator, "moder")
    served = moderator.get(path)
    assert served.status_code == 200 and served.content == PDF
    assert served.headers["content-type"] == "application/pdf"
    assert served.headers["content-security-policy"] == "sandbox"
    assert "attachment;" in served.headers["content-disposition"]
    page = moderator.get(f"/appeals/{number}")
    assert path in page.text
    own = web.new_client()
    login(own, "astana")
    assert own.get(path).status_code == 200
    other = web.new_client()
    login(other, "almaty")
    hidden = other.get(path)
    missing = other.get("/appeals/ADL-2020-999999/messages/1/attachments/0")
    assert hidden.status_code == missing.status_code == 404


def test_pages_are_never_framed_except_the_embed_variant_by_the_configured_origin(web: WebApp) -> None:
    client = web.new_client()
    plain = client.get("/public/appeal")
    assert plain.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert plain.headers["x-frame-options"] == "DENY"
    embed = client.get("/public/appeal?embed=1")
    assert embed.headers["content-security-policy"] == "frame-ancestors https://www.gov.kz"
    assert "x-frame-options" not in embed.headers
    assert 'class="public-top"' in plain.text and 'class="public-top"' not in embed.text
    assert client.get("/public/status").headers["content-security-policy"] == "frame-ancestors 'none'"


def test_the_form_offers_the_six_kinds_in_every_language(web: WebApp) -> None:
    client = web.new_client()
    for lang in ("kk", "ru", "en"):
        page = client.get(f"/public/appeal?lang={lang}")
        assert f'<html lang="{lang}">' in page.text
        kinds = re.findall(r'name="kind" id="kind-(\w+)"', page.text)
        assert kinds == ["application", "complaint", "report", "response", "proposal", "request"]
        assert 'name="website"' in page.text and 'type="hidden" name="website"' not in page.text


def test_the_same_form_sent_twice_is_one_appeal(web: WebApp) -> None:
    client = web.new_client()
    tokens = _form(client)
    web.clock.advance(seconds=30)
    first = _send(web, client, tokens)
    number, _code = _number_and_code(first)
    again = _send(web, client, tokens)  # the browser's "send the form again?" after a reload
    assert again.status_code == 200
    assert 'id="already-sent"' in again.text and number in again.text
    assert 'id="appeal-code"' not in again.text  # the code is shown once
    with Session(web.runtime.engine) as s:
        assert len(s.exec(select(Appeal)).all()) == 1


class EmailStandIn(StandInConnector):
    """The e-mail channel as the core sees it (its connector is another part of the issue)."""

    name: ClassVar[str] = "email"

    @property
    def account(self) -> str:
        return "appeals@ecogeo.gov.kz"


def test_an_email_answer_goes_to_the_email_channel_when_it_runs(web: WebApp) -> None:
    web.runtime.connectors = {"email": EmailStandIn()}
    client = web.new_client()
    number, _code = _number_and_code(_submitted(web, client, email="Aigul@Example.KZ"))
    with Session(web.runtime.engine) as s:
        appeal = s.exec(select(Appeal).where(Appeal.number == number)).one()
        notice = s.exec(select(OutboxItem).where(OutboxItem.appeal_id == appeal.id)).one()
        assert notice.key == f"notice:registration:{appeal.id}"
        assert (notice.channel, notice.account, notice.chat_id) == (
            "email",
            "appeals@ecogeo.gov.kz",
            "aigul@example.kz",
        )
        assert s.exec(select(StaffTask).where(StaffTask.appeal_id == appeal.id)).first() is None


def test_a_body_past_the_forms_own_limit_gets_a_page_in_the_citizens_language(make_settings: Any) -> None:
    settings = make_settings(
        public_max_file_bytes=64 * 1024,
        public_max_files_bytes=100 * 1024,
        public_max_request_bytes=128 * 1024,
    )
    with WebApp(settings) as web:
        client = web.new_client()
        tokens = _form(client)
        web.clock.advance(seconds=30)
        huge = PDF + b"0" * (200 * 1024)
        answer = _send(web, client, tokens, files=[("attachment", ("video.pdf", huge, "application/pdf"))])
        assert answer.status_code == 413
        assert answer.headers["content-type"].startswith("text/html")
        assert '<html lang="kk">' in answer.text
        assert _kk("The appeal was not sent: the files are too large") in answer.text
        assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"


def test_a_chunked_body_past_the_limit_gets_the_same_page(make_settings: Any) -> None:
    settings = make_settings(
        public_max_file_bytes=64 * 1024,
        public_max_files_bytes=100 * 1024,
        public_max_request_bytes=128 * 1024,
    )
    with WebApp(settings) as web:
        client = web.new_client()
        tokens = _form(client)
        web.clock.advance(seconds=30)
        huge = PDF + b"0" * (200 * 1024)
        built = httpx.Request(
            "POST",
            f"{web.url}/public/appeal?lang=kk",
            data={**tokens, **_fields()},
            files=[("attachment", ("video.pdf", huge, "application/pdf"))],
        )
        body = built.read()

        def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
            for start in range(0, len(body), 16 * 1024):
                yield body[start : start + 16 * 1024]

        answer = client.post(
            "/public/appeal?lang=kk",
            content=chunks(),
            headers={"content-type": built.headers["content-type"]},
        )
        assert answer.status_code == 413
        assert _kk("The appeal was not sent: the files are too large") in answer.text


def test_the_database_away_gives_the_form_back_with_the_text_and_then_it_goes_through(
    web: WebApp, database_url: str
) -> None:
    client = web.new_client()
    tokens = _form(client)
    web.clock.advance(seconds=30)
    with database_away(database_url, [web.runtime.engine]):
        answer = _send(web, client, tokens)
    assert answer.status_code == 503
    assert html.escape(KK_TEXT, quote=False) in answer.text
    assert (
        _kk(
            "The appeal could not be saved because of a fault on our side. Nothing was lost from the form: "
            "please send it again in a few minutes."
        )
        in answer.text
    )
    again = {"csrf_token": csrf_of(answer.text), "issued": tokens["issued"]}
    number, _code = _number_and_code(_send(web, client, again))
    with Session(web.runtime.engine) as s:
        assert s.exec(select(Appeal.number)).all() == [number]
