"""The legal clock: registration (APPC Art. 64, R1) and the 15-working-day term (Art. 76, R3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adaldyk_bots.calendar import CalendarOverrides, WorkingCalendar

ALMATY = ZoneInfo("Asia/Almaty")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ALMATY)


@pytest.fixture
def cal() -> WorkingCalendar:
    return WorkingCalendar(tz=ALMATY, work_start=time(9), work_end=time(18))


def test_received_in_working_hours_is_registered_at_once(cal):
    received = local(2026, 11, 26, 11, 30)  # Thursday
    assert cal.registration_time(received) == received


@pytest.mark.parametrize(
    ("received", "registered"),
    [
        (local(2026, 11, 26, 18, 0), local(2026, 11, 27, 9, 0)),  # at closing time: next working day
        (local(2026, 11, 26, 23, 59), local(2026, 11, 27, 9, 0)),
        (local(2026, 11, 27, 7, 15), local(2026, 11, 27, 9, 0)),  # before opening: the same day
        (local(2026, 11, 28, 12, 0), local(2026, 11, 30, 9, 0)),  # Saturday -> Monday
        (local(2026, 3, 23, 10, 0), local(2026, 3, 26, 9, 0)),  # Nauryz (21-25 March with transfers)
        (local(2026, 12, 16, 10, 0), local(2026, 12, 17, 9, 0)),  # Independence Day
    ],
)
def test_after_hours_or_day_off_registers_on_next_working_day(cal, received, registered):
    assert cal.registration_time(received) == registered.astimezone(UTC)


def test_fifteen_working_days_across_nauryz(cal):
    # Mon 16 Mar 2026: 17,18,19,20 | 21-25 off (Nauryz, 24-25 transferred) | 26,27,30,31, 1,2,3,6,7,8,9 Apr.
    due = cal.due_at(local(2026, 3, 16, 10, 0), 15)
    assert due == local(2026, 4, 9, 18, 0).astimezone(UTC)


def test_fifteen_working_days_across_new_year(cal):
    # Fri 25 Dec 2026: 28,29,30,31 | 1 Jan, weekend, 4 Jan (1-2 Jan transferred) off | 5,6 | 7 Jan off
    # (Orthodox Christmas, never transferred) | 8,11,12,13,14,15,18,19,20 Jan 2027.
    due = cal.due_at(local(2026, 12, 25, 15, 0), 15)
    assert due == local(2027, 1, 20, 18, 0).astimezone(UTC)


def test_registration_date_counts_from_local_day_not_utc_day(cal):
    # 08:30 local on Monday is still Sunday in UTC: counting must use the local date.
    registered = cal.registration_time(local(2026, 11, 30, 8, 30))
    assert registered == local(2026, 11, 30, 9, 0).astimezone(UTC)
    assert cal.due_at(registered, 1) == local(2026, 12, 1, 18, 0).astimezone(UTC)


def test_override_table_wins_over_the_package(tmp_path: Path):
    overrides_file = tmp_path / "calendar_overrides.toml"
    overrides_file.write_text(
        "[[days_off]]\ndate = 2026-11-30\nreason = 'decree'\n"
        "[[working_days]]\ndate = 2026-12-05\nreason = 'Saturday made a working day'\n"
        "[[working_days]]\ndate = 2026-12-16\nreason = 'not a real decree, a test'\n",
        encoding="utf-8",
    )
    cal = WorkingCalendar(tz=ALMATY, overrides=CalendarOverrides.load(overrides_file))
    assert not cal.is_working_day(date(2026, 11, 30))
    assert cal.is_working_day(date(2026, 12, 5))
    assert cal.is_working_day(date(2026, 12, 16))
    # Registered Fri 27 Nov: Mon 30 is now off; Sat 5 Dec counts. 1,2,3,4,5(Sat) -> 5 days = Sat 5 Dec.
    assert cal.due_at(local(2026, 11, 27, 10, 0), 5) == local(2026, 12, 5, 18, 0).astimezone(UTC)
    assert cal.registration_time(local(2026, 11, 30, 10, 0)) == local(2026, 12, 1, 9, 0).astimezone(UTC)


def test_override_file_with_a_bad_entry_says_where(tmp_path: Path):
    bad = tmp_path / "calendar_overrides.toml"
    bad.write_text("[[days_off]]\ndate = 'tomorrow'\n", encoding="utf-8")
    with pytest.raises(ValueError, match="days_off"):
        CalendarOverrides.load(bad)


def test_shipped_overrides_load():
    shipped = Path(__file__).resolve().parent.parent / "config" / "calendar_overrides.toml"
    overrides = CalendarOverrides.load(shipped)
    assert date(2025, 1, 5) in overrides.working_days
