"""The receipt an applicant gets for an appeal accepted on the phone line or at the reception (R2,
APPK Art. 64(2)): the number, the date and time of registration, the surname, initials and position of the
person who accepted it — plus the due date and how to ask about progress — in Kazakh and in Russian on one
sheet (the state language and the language of interethnic communication; R10).

`build_receipt` gathers the fields, `receipt_pdf` lays them out with fpdf2 and the DejaVu Sans font shipped
in `adaldyk_bots/fonts/` (every Kazakh letter: ә ғ қ ң ө ұ ү һ і; a fresh machine needs nothing else).
The web page `?format=html` renders the same `Receipt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from sqlmodel import Session

from adaldyk_bots.calendar import WorkingCalendar
from adaldyk_bots.i18n import N_, translations
from adaldyk_bots.storage.models import Appeal, StaffUser

__all__ = ["RECEIPT_LANGUAGES", "Receipt", "build_receipt", "receipt_pdf", "short_name"]

FONTS_DIR = Path(__file__).parent / "fonts"
RECEIPT_LANGUAGES = ("kk", "ru")
STATUS_PATH = "/public/status"

TITLE = N_("Receipt for an appeal")
BODY = N_("Ministry of Ecology and Natural Resources of the Republic of Kazakhstan")
LABELS = {
    "number": N_("Appeal number"),
    "registered": N_("Registered on"),
    "accepted_by": N_("Accepted by"),
    "position": N_("Position"),
    "channel": N_("How it was received"),
    "due": N_("Answer due by"),
    "progress": N_("How to ask about progress"),
}
CHANNELS = {"phone": N_("by phone"), "reception": N_("at the reception room"), "web": N_("web site")}
PROGRESS_STATUS = N_("on the status page %(url)s with the appeal number")
PROGRESS_PHONE = N_("by calling %(phone)s and giving the appeal number")
PROGRESS_NUMBER = N_("give the appeal number %(number)s")
LAW = N_(
    "Issued under Article 64 of the Administrative Procedural and Process Code of the Republic of Kazakhstan."
)


@dataclass(frozen=True)
class Receipt:
    number: str
    registered: str  # local date and time, dd.mm.yyyy hh:mm
    due: str  # local date
    accepted_by: str  # "Surname I. O."
    position: str
    channel: str
    status_url: str
    phone_line: str

    def section(self, lang: str) -> tuple[str, list[tuple[str, str]], str]:
        """(title, [(label, value)], the closing line) in `lang`."""
        _ = translations(lang).gettext
        progress = [
            _(PROGRESS_NUMBER) % {"number": self.number},
            _(PROGRESS_STATUS) % {"url": self.status_url},
        ]
        if self.phone_line:
            progress.append(_(PROGRESS_PHONE) % {"phone": self.phone_line})
        lines = [
            (_(LABELS["number"]), self.number),
            (_(LABELS["registered"]), self.registered),
            (_(LABELS["accepted_by"]), self.accepted_by),
            (_(LABELS["position"]), self.position or "—"),
            (_(LABELS["channel"]), _(CHANNELS.get(self.channel, self.channel))),
            (_(LABELS["due"]), self.due),
            (_(LABELS["progress"]), "; ".join(progress)),
        ]
        return _(TITLE), lines, _(LAW)

    @property
    def body(self) -> dict[str, str]:
        return {lang: translations(lang).gettext(BODY) for lang in RECEIPT_LANGUAGES}


def short_name(full_name: str) -> str:
    """ "Surname Name Patronymic" as "Surname N. P." (the order of Kazakh and Russian official papers)."""
    words = full_name.split()
    if len(words) < 2:
        return full_name.strip()
    return " ".join([words[0], *(f"{w[0].upper()}." for w in words[1:3])])


def build_receipt(
    s: Session,
    appeal: Appeal,
    *,
    calendar: WorkingCalendar,
    public_url: str | None,
    phone_line: str,
) -> Receipt:
    taker = s.get(StaffUser, appeal.taken_by_id) if appeal.taken_by_id else None
    base = (public_url or "").rstrip("/")
    return Receipt(
        number=appeal.number,
        registered=_local(calendar, appeal.registered_at, "%d.%m.%Y %H:%M"),
        due=_local(calendar, appeal.due_at, "%d.%m.%Y"),
        accepted_by=short_name(taker.full_name or taker.username) if taker else "—",
        position=taker.position if taker else "",
        channel=appeal.channel,
        status_url=f"{base}{STATUS_PATH}",
        phone_line=phone_line,
    )


def _local(calendar: WorkingCalendar, moment: datetime, pattern: str) -> str:
    return moment.astimezone(calendar.tz).strftime(pattern)


def receipt_pdf(receipt: Receipt) -> bytes:
    """One A4 page: the Kazakh half, then the Russian one, each with every R2 field."""
    pdf = FPDF(format="A4")
    pdf.set_title(f"{receipt.number}")
    pdf.set_creator("Adaldyk")
    pdf.add_font("DejaVu", "", str(FONTS_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONTS_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_margins(18, 16, 18)
    pdf.add_page()
    for index, lang in enumerate(RECEIPT_LANGUAGES):
        title, lines, law = receipt.section(lang)
        if index:
            pdf.ln(4)
            pdf.set_dash_pattern(dash=2, gap=2)  # the cut line between the two languages
            pdf.line(18, pdf.get_y(), 192, pdf.get_y())
            pdf.set_dash_pattern()
            pdf.ln(6)
        pdf.set_font("DejaVu", "", 9)
        pdf.multi_cell(0, 5, receipt.body[lang], new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "B", 14)
        pdf.multi_cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
        for label, value in lines:
            pdf.set_font("DejaVu", "B", 10)
            pdf.multi_cell(0, 6, label, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("DejaVu", "", 11)
            pdf.multi_cell(0, 6, value, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 8)
        pdf.ln(2)
        pdf.multi_cell(0, 4, law, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
