"""What a person reads for the codes the data layer stores: statuses, channels, categories, languages.

The msgids are marked with N_ here and translated where they are shown (`label(_, kind, code)` in Python,
`label(_, "status", a.status)` in templates through `ui.render`'s context). One map for every page and
export, so an appeal's status reads the same in the inbox, on the appeal page and in a CSV file. A code
this version does not know (a channel added later) is shown as the code itself rather than hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from adaldyk_bots.domain import AppealStatus, Category, Language
from adaldyk_bots.i18n import N_

__all__ = ["CATEGORIES", "CHANNELS", "LABELS", "LANGUAGES", "STATUSES", "label"]

STATUSES: Mapping[str, str] = {
    AppealStatus.RECEIVED: N_("Received"),
    AppealStatus.REGISTERED: N_("Registered"),
    AppealStatus.ASSIGNED: N_("Assigned"),
    AppealStatus.IN_PROGRESS: N_("In progress"),
    AppealStatus.HEARING: N_("Hearing"),
    AppealStatus.FORWARDED: N_("Forwarded"),
    AppealStatus.EXTENDED: N_("Term extended"),
    AppealStatus.ANSWERED: N_("Answered"),
    AppealStatus.CLOSED: N_("Closed"),
    AppealStatus.REJECTED: N_("Rejected"),
    AppealStatus.MERGED: N_("Merged"),
    AppealStatus.REOPENED: N_("Reopened"),
}

CATEGORIES: Mapping[str, str] = {
    Category.COMPLAINT: N_("Complaint"),
    Category.PROPOSAL: N_("Proposal"),
    Category.REQUEST: N_("Request"),
    Category.APPLICATION: N_("Application"),
    Category.REPORT: N_("Report of a violation"),
    Category.RESPONSE: N_("Response"),
    Category.CORRUPTION_REPORT: N_("Corruption report"),
    Category.GRATITUDE: N_("Gratitude"),
    Category.OTHER: N_("Other"),
}

LANGUAGES: Mapping[str, str] = {
    Language.KK: N_("Kazakh"),
    Language.RU: N_("Russian"),
    Language.EN: N_("English"),
}

# Channels are connectors' names (entry points): the ones this version ships or plans, by their brand.
CHANNELS: Mapping[str, str] = {
    "telegram": N_("Telegram"),
    "vk": N_("VK"),
    "facebook": N_("Facebook"),
    "instagram": N_("Instagram"),
    "whatsapp": N_("WhatsApp"),
    "email": N_("E-mail"),
    "web": N_("Web form"),
    "phone": N_("Phone"),
}

LABELS: Mapping[str, Mapping[str, str]] = {
    "status": STATUSES,
    "category": CATEGORIES,
    "language": LANGUAGES,
    "channel": CHANNELS,
}


def label(gettext: Callable[[str], str], kind: str, code: str | None) -> str:
    """The translated label of `code` among `kind` ("status", "category", "language", "channel")."""
    if code is None:
        return ""
    msgid = LABELS[kind].get(code)
    return gettext(msgid) if msgid is not None else code
