"""The staff notices page names every kind of notice the code writes, in Kazakh and Russian (the page
itself: tests/test_deadline_pages.py; its words: tests/test_page_languages.py)."""

from __future__ import annotations

from adaldyk_bots.i18n import translations
from adaldyk_bots.web.notice_pages import KIND_NAMES
from tests.support import literal_arguments


def test_every_kind_of_notice_has_a_name_in_every_language() -> None:
    # Notices are written by staff_work.notify_staff / notify_acting_head and staff_alerts' to_unit_head /
    # to_user, each with a literal `kind=` (staff_alerts passes its caller's on).
    written = literal_arguments({"notify_staff", "notify_acting_head", "to_unit_head", "to_user"}, "kind")
    assert {"approval", "reminder", "digest", "escalation"} <= set(written), written
    unnamed = {kind: where for kind, where in written.items() if kind not in KIND_NAMES}
    assert not unnamed, f"the notices page would show these as codes: {unnamed}"
    assert set(KIND_NAMES) <= set(written), set(KIND_NAMES) - set(written)
    for lang in ("kk", "ru"):
        for kind, msgid in KIND_NAMES.items():
            assert translations(lang).gettext(msgid) != msgid, (lang, kind)
