"""Kazakhstan working-day calendar and the legal clock of an appeal (registration and due date)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays

OVERRIDES_FILE = "calendar_overrides.toml"


@dataclass(frozen=True)
class CalendarOverrides:
    """Government decrees the `holidays` package cannot know in advance (day transfers, Kurban Ait)."""

    days_off: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()

    @classmethod
    def load(cls, path: Path) -> CalendarOverrides:
        if not path.exists():
            return cls()
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        return cls(
            days_off=frozenset(_dates(data.get("days_off", []), path, "days_off")),
            working_days=frozenset(_dates(data.get("working_days", []), path, "working_days")),
        )


def _dates(items: list[object], path: Path, table: str) -> list[date]:
    result = []
    for item in items:
        value = item.get("date") if isinstance(item, dict) else item
        if not isinstance(value, date) or isinstance(value, datetime):
            raise ValueError(f"{path}: every entry of [{table}] needs a date like 2026-05-04, got {item!r}")
        result.append(value)
    return result


@dataclass
class WorkingCalendar:
    tz: ZoneInfo
    work_start: time = time(9, 0)
    work_end: time = time(18, 0)
    overrides: CalendarOverrides = field(default_factory=CalendarOverrides)

    def __post_init__(self) -> None:
        # The package applies the law's weekend-transfer rule and known decrees; overrides win.
        self._holidays = holidays.country_holidays("KZ")

    def is_working_day(self, day: date) -> bool:
        if day in self.overrides.working_days:
            return True
        if day in self.overrides.days_off:
            return False
        return bool(self._holidays.is_working_day(day))

    def next_working_day(self, day: date) -> date:
        day += timedelta(days=1)
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def add_working_days(self, day: date, count: int) -> date:
        for _ in range(count):
            day = self.next_working_day(day)
        return day

    def registration_time(self, received_at: datetime) -> datetime:
        """R1 (APPC Art. 64): registered the day it is received; after hours or on a day off, the
        next working day at the start of working hours. Returned in UTC."""
        local = received_at.astimezone(self.tz)
        if self.is_working_day(local.date()) and local.time() < self.work_end:
            if local.time() >= self.work_start:
                return received_at
            return self._at(local.date(), self.work_start)
        return self._at(self.next_working_day(local.date()), self.work_start)

    def due_at(self, registered_at: datetime, working_days: int) -> datetime:
        """R3 (APPC Art. 76): N working days counted from the day after registration; the answer is
        due by the end of the last one. Returned in UTC."""
        local_day = registered_at.astimezone(self.tz).date()
        return self._at(self.add_working_days(local_day, working_days), self.work_end)

    def working_days_left(self, now: datetime, due_at: datetime, *, cap: int = 260) -> int:
        """Working days from today to the due day: 0 when due by the end of today, 1 for the next
        working day...; when overdue, minus the working days since the due day (0 when it was due
        earlier today: the caller tells overdue by `due_at < now`). Counted up to `cap` either way (a
        year of working days), so a page of long-forgotten appeals costs a bounded loop per row."""
        today = now.astimezone(self.tz).date()
        due_day = due_at.astimezone(self.tz).date()
        if due_at >= now:
            count, day = 0, today
            while day < due_day and count < cap:
                day += timedelta(days=1)
                count += self.is_working_day(day)
            return count
        count, day = 0, due_day
        while day < today and count < cap:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return -count

    def _at(self, day: date, moment: time) -> datetime:
        return datetime.combine(day, moment, tzinfo=self.tz).astimezone(ZoneInfo("UTC"))
