"""The sandbox's simulated moderator: a person at the workspace, played over HTTP.

It logs in through the real form (`GET /login` for the form's CSRF token, `POST /login`), opens the
inbox `/`, and for each new appeal — a few seconds after it first shows there, so a newcomer watching the
inbox sees it arrive — opens it, takes it into work (`POST /appeals/{number}/status`) and answers the
citizen in the appeal's language (`POST /appeals/{number}/reply`, field `text`), every form with the
session's `csrf_token`. Everything it does is recorded as the logged-in user's.

It reads the appeal's language and status from the JSON API (GET, the same user's token): the appeal
page's markup is that page's to change, the API's fields are a contract. Where the workspace lacks a
page (a build without the inbox or the appeal page: 404/405), it does the same through the JSON API
(`/api/v1/appeals…`) with the token, and says so once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

__all__ = ["REPLIES", "WorkspaceModerator"]

NUMBER = re.compile(r'href="/appeals/([A-Z]+-\d{4}-\d{6})"')
_FORM_CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')
_META_CSRF = re.compile(r'<meta\s+name="csrf-token"\s+content="([^"]+)"')
# Seconds an appeal stays untouched in the inbox before the moderator takes it: time to see it arrive.
TAKE_AFTER = 3.0
REPLIES = {
    "kk": "Сәлеметсіз бе! Өтінішіңіз жұмысқа алынды, жауабын заңда белгіленген мерзімде береміз. "
    "Құрметпен, жобалық кеңсенің модераторы.",
    "ru": "Здравствуйте! Ваше обращение взято в работу, ответ дадим в установленный законом срок. "
    "С уважением, модератор проектного офиса.",
}
_MISSING = (404, 405)


class _Refused(Exception):
    """The workspace answered an action with an error that is not "no such page"."""


@dataclass
class WorkspaceModerator:
    base_url: str
    username: str
    password: str
    api_token: str
    say: Callable[[str], None]
    take_after: float = TAKE_AFTER
    client: httpx.Client = field(init=False)  # the browser: cookies of the workspace session
    api: httpx.Client = field(init=False)  # the same user's token, where the workspace has no page
    csrf: str | None = field(default=None, init=False)
    seen: dict[str, float] = field(default_factory=dict, init=False)
    done: set[str] = field(default_factory=set, init=False)
    # Which parts of the workspace answered: None until tried, then True (pages) or False (JSON API).
    pages: dict[str, bool] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=10.0, follow_redirects=False)
        self.api = httpx.Client(
            base_url=self.base_url, timeout=10.0, headers={"Authorization": f"Bearer {self.api_token}"}
        )

    def close(self) -> None:
        self.client.close()
        self.api.close()

    # --- one round ---------------------------------------------------------------------------------

    def round(self) -> None:
        """Look at the inbox once and take every appeal that has waited there long enough. Network
        trouble (the web server is starting or stopping) waits for the next round."""
        try:
            if self.csrf is None and not self.log_in():
                return
            now = time.monotonic()
            for number in self.inbox():
                first = self.seen.setdefault(number, now)
                if number not in self.done and now - first >= self.take_after:
                    self.take(number)
        except httpx.TransportError:
            return

    def log_in(self) -> bool:
        form = self.client.get("/login")
        found = _FORM_CSRF.search(form.text)
        if form.status_code != 200 or found is None:
            return False
        answer = self.client.post(
            "/login",
            data={"username": self.username, "password": self.password, "csrf_token": found.group(1)},
        )
        if answer.status_code != 303:
            self.say(f"🧑‍💼 модератор: вход не удался ({answer.status_code})")
            return False
        # The session's own CSRF token, which every later form carries (the login form's was another).
        page = self.client.get("/account/password")
        token = _META_CSRF.search(page.text) or _FORM_CSRF.search(page.text)
        if token is None:
            return False
        self.csrf = token.group(1)
        self.say(f"🧑‍💼 модератор {self.username} вошёл в рабочее место через форму входа")
        return True

    def inbox(self) -> list[str]:
        """The appeals the inbox shows, oldest first (the inbox lists newest first)."""
        page = self.client.get("/")
        if self._uses_pages("inbox", page):
            if page.status_code in (303, 401):  # the session ended: log in again next round
                self.csrf = None
                return []
            return list(dict.fromkeys(reversed(NUMBER.findall(page.text))))
        listing = self.api.get("/api/v1/appeals", params={"status": "received", "limit": 200})
        listing.raise_for_status()
        return [item["number"] for item in reversed(listing.json()["items"])]

    def take(self, number: str) -> None:
        """Open the appeal, take it into work, answer the citizen in the appeal's language."""
        try:
            self.client.get(f"/appeals/{number}")  # as a person would; the history records the view
            detail = self.api.get(f"/api/v1/appeals/{number}")
            if detail.status_code != 200:
                return
            appeal = detail.json()
            if appeal["status"] == "received":
                self._act(number, "status", {"status": "in_progress"})
                self.say(f"🧑‍💼 модератор: {number} → in_progress")
            self._act(number, "reply", {"text": REPLIES.get(appeal["language"], REPLIES["ru"])})
            self.say(f"🧑‍💼 модератор ответил на {number} ({appeal['language']})")
        except _Refused as exc:
            self.say(f"🧑‍💼 модератор: {number}: {exc}")
        self.done.add(number)

    # --- the two ways to act -------------------------------------------------------------------------

    def _act(self, number: str, action: str, fields: dict[str, str]) -> None:
        if self.pages.get(action, True):
            answer = self.client.post(f"/appeals/{number}/{action}", data={**fields, "csrf_token": self.csrf})
            if self._uses_pages(action, answer):
                if answer.status_code >= 400:
                    raise _Refused(f"{action}: the workspace answered {answer.status_code}")
                # A refused form goes back to the appeal page with the reason in the query (?error=…).
                back = httpx.URL(answer.headers.get("location", ""))
                if "error" in back.params:
                    raise _Refused(f"{action}: the workspace refused it ({back.params['error']})")
                return
        answer = self.api.post(f"/api/v1/appeals/{number}/{action}", json=fields)
        if answer.status_code >= 400:
            raise _Refused(f"{action}: the API answered {answer.status_code} {answer.text[:200]}")

    def _uses_pages(self, part: str, answer: httpx.Response) -> bool:
        known = self.pages.get(part)
        if known is None:
            known = self.pages[part] = answer.status_code not in _MISSING
            how = "через рабочее место" if known else "через JSON API (в этой сборке нет страницы)"
            self.say(f"🧑‍💼 модератор: {part} — {how}")
        return known
