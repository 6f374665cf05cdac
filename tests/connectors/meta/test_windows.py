"""Reply windows decided at send time (issue 8): Messenger/Instagram 24 h RESPONSE, 24 h-7 d HUMAN_AGENT only
for a moderator's text and only with the permission, one private reply per comment within 7 days,
WhatsApp free text within 24 h and templates (or a waiting answer) after."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adaldyk_bots.dispatcher import PERSON_WRITTEN_PURPOSES
from adaldyk_bots.domain import ReplyTarget, SendContext, WindowDecision
from adaldyk_bots.lifecycle import NOTICE_OF
from connectors.meta.send import WhatsAppTemplates, decide_window

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEMPLATES = WhatsAppTemplates.load(Path(__file__).parents[3] / "config" / "whatsapp_templates.toml")


def _context(hours: float, purpose: str, *, sent: int = 0) -> SendContext:
    return SendContext(
        purpose=purpose,
        written_by_person=purpose == "reply",
        last_inbound_at=NOW - timedelta(hours=hours),
        now=NOW,
        sent_since_inbound=sent,
        language="kk",
        fields={"number": "ADL-2026-000007", "status": "қаралуда", "due": "22.12.2026"},
    )


def _decide(
    channel: str, hours: float, purpose: str, *, kind: str = "message", **kw: object
) -> WindowDecision:
    target = ReplyTarget(channel, "1", "42", kind=kind)
    sent = int(kw.pop("sent", 0))  # type: ignore[call-overload]
    human_agent = bool(kw.pop("human_agent", False))
    return decide_window(
        channel, target, _context(hours, purpose, sent=sent), human_agent=human_agent, templates=TEMPLATES
    )


@pytest.mark.parametrize("channel", ["facebook", "instagram"])
def test_messenger_and_instagram(channel: str) -> None:
    assert _decide(channel, 1, "ack") == WindowDecision.open("RESPONSE")
    assert _decide(channel, 23.9, "status") == WindowDecision.open("RESPONSE")
    # 25 h: a moderator's reply goes with HUMAN_AGENT only when the app has the permission ...
    assert _decide(channel, 25, "reply", human_agent=True) == WindowDecision.open("HUMAN_AGENT")
    off = _decide(channel, 25, "reply", human_agent=False)
    assert off.kind == "closed" and "ADALDYK_META_HUMAN_AGENT" in off.detail
    # ... and an automated notice never does.
    notice = _decide(channel, 25, "status", human_agent=True)
    assert notice.kind == "closed" and notice.code == "meta.window_closed"
    assert notice.detail.startswith("cannot reach the citizen: reply window closed")
    # After 7 days nothing goes.
    assert _decide(channel, 24 * 7 + 1, "reply", human_agent=True).kind == "closed"


@pytest.mark.parametrize("channel", ["facebook", "instagram"])
def test_a_comment_gets_one_private_reply_within_seven_days(channel: str) -> None:
    assert _decide(channel, 30, "ack", kind="comment") == WindowDecision.open()
    used = _decide(channel, 1, "status", kind="comment", sent=1)
    assert used.kind == "closed" and "private reply" in used.detail
    assert _decide(channel, 24 * 7 + 1, "ack", kind="comment").kind == "closed"
    assert _decide(channel, 24 * 30, "invite", kind="public_comment") == WindowDecision.open()


def test_whatsapp() -> None:
    assert _decide("whatsapp", 2, "reply") == WindowDecision.open()
    status = _decide("whatsapp", 25, "status")
    assert (status.kind, status.template, status.template_language) == (
        "template",
        "adaldyk_status_changed",
        "kk",
    )
    assert status.params == ("ADL-2026-000007", "қаралуда")
    ack = _decide("whatsapp", 25, "ack")
    assert ack.template == "adaldyk_appeal_registered" and ack.params == ("ADL-2026-000007", "22.12.2026")
    # A moderator's free text waits, visibly, and the answer_ready template is owed meanwhile.
    waiting = _decide("whatsapp", 25, "reply")
    assert (waiting.kind, waiting.code, waiting.notice) == (
        "wait",
        "whatsapp.window_closed_waiting",
        "answer_ready",
    )
    ready = _decide("whatsapp", 25, "answer_ready")
    assert ready.kind == "template" and ready.template == "adaldyk_answer_ready"
    # A notice kind without a template cannot go after 24 h.
    assert _decide("whatsapp", 25, "info").kind == "closed"
    bare = decide_window(
        "whatsapp", ReplyTarget("whatsapp", "1", "42"), _context(25, "reply"), human_agent=False
    )
    assert bare.kind == "closed"


@pytest.mark.parametrize("notice", sorted(set(NOTICE_OF.values())))
def test_whatsapp_after_24_hours_every_notice_the_law_owes_has_its_template(notice: str) -> None:
    """Registration, forwarding, extension, hearing (lifecycle.NOTICE_OF): a WhatsApp citizen who wrote
    more than 24 hours ago still gets them, as the approved template of config/whatsapp_templates.toml;
    the answer, written by a person, waits for the citizen like a moderator's reply."""
    decided = decide_window(
        "whatsapp",
        ReplyTarget("whatsapp", "1", "42"),
        replace(_context(25, notice), written_by_person=notice in PERSON_WRITTEN_PURPOSES),
        human_agent=False,
        templates=TEMPLATES,
    )
    if notice in PERSON_WRITTEN_PURPOSES:
        assert (decided.kind, decided.notice) == ("wait", "answer_ready")
        return
    assert decided.kind == "template", decided
    assert decided.template_language == "kk" and decided.params[0] == "ADL-2026-000007"
    if notice == "extension":  # R4: the new due date
        assert decided.params == ("ADL-2026-000007", "22.12.2026")
