"""instaloader, composed: the comments under an account's recent posts, one round at a time, never
sleeping on Instagram's behalf.

What this wrapper adds to instaloader (4.16):
- **No long sleeps.** instaloader's RateController sleeps before a query when its own budget is spent
  and after a 429 (up to half an hour), and its get_json retries. Here each round is one attempt:
  `max_connection_attempts=1`, `sleep=False`, and a RateController (its documented extension point)
  that refuses any wait longer than a few seconds. A 429 or a login wall stops the round with a
  `RoundStopped` that says why; the connector puts it on /healthz and tries again next interval.
- **The loopback seam.** instaloader builds its own `requests.Session`s (anonymous ones, copies for
  GraphQL, the iPhone API) from `instaloader.instaloadercontext.requests`, always against
  https://www.instagram.com and https://i.instagram.com. With a base URL (tests, sandbox), that module
  name is pointed at a stand-in whose `Session()` mounts `_LoopbackAdapter` for both hosts: a request
  for https://www.instagram.com/p/x/ goes, over real HTTP, to <base>/www.instagram.com/p/x/. Cookies are
  still chosen for (and kept from) the real host names, so sessions behave as in production.
- **Plain data out.** `Comment` records carry only what the intake stores; no instaloader type leaves.

Endpoints a logged-in round calls (what tests/connectors/instagram_monitor's fake serves):
GET /{account}/ (profile page, embedded JSON) · POST /graphql/query doc_id 27937681195819736 (profile)
· GET / (web app tokens) · POST /api/graphql doc_id 29104886249145907 (the timeline) · per post POST
/graphql/query doc_id 27128499623469141 (post metadata) and GET /graphql/query query_hash
97b41c52301f77ce508f55e66d17620e (comments; more than 12: i.instagram.com /api/v1/media/{id}/comments/).
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import instaloader
import requests
from instaloader import instaloadercontext
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

__all__ = ["Comment", "InstagramReader", "RoundStopped"]

INSTAGRAM_HOSTS = ("www.instagram.com", "i.instagram.com")
# Waits up to this long are instaloader's ordinary pacing between queries; anything longer is its
# "too many queries" back-off, which would hold the worker for minutes.
LONGEST_WAIT_SECONDS = 3.0
_STATUS_429 = re.compile(r"^(?:JSON Query to \S+: )?429 ")


class RoundStopped(Exception):
    """Instagram refused this round: `state` for /healthz (degraded: try later; broken: a person must
    act), a stable `code`, and a `detail` saying what to do."""

    def __init__(self, state: str, code: str, detail: str) -> None:
        super().__init__(detail)
        self.state, self.code, self.detail = state, code, detail


class _WouldWait(Exception):
    """instaloader's RateController wanted to sleep long: not in a worker."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"instaloader wanted to wait {seconds:.0f} s ({reason})")
        self.seconds, self.reason = seconds, reason


class _NoLongSleep(instaloader.RateController):
    def sleep(self, secs: float) -> None:
        if secs > LONGEST_WAIT_SECONDS:
            raise _WouldWait(secs, "its own query budget is spent")
        time.sleep(secs)

    def handle_429(self, query_type: str) -> None:
        # Only reached before a second attempt, which max_connection_attempts=1 never makes; kept so a
        # change of that setting still never sleeps half an hour.
        raise _WouldWait(0.0, "429 Too Many Requests")


@dataclass(frozen=True)
class Comment:
    post_shortcode: str
    post_id: str
    comment_id: str
    created_at: datetime  # UTC
    text: str
    owner_id: str
    owner_username: str
    reply_to: str | None = None  # the comment this one answers, in a thread


class _LoopbackAdapter(HTTPAdapter):
    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        routed = request.copy()  # the session keeps cookies by the original request's host
        routed.url = f"{self.base_url}/{parts.hostname}{parts.path}" + (
            f"?{parts.query}" if parts.query else ""
        )
        return super().send(routed, *args, **kwargs)


class _RequestsThroughLoopback:
    """Stands in for the `requests` module inside instaloadercontext: the same, but its sessions send
    www.instagram.com and i.instagram.com requests to the loopback base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def __getattr__(self, name: str) -> Any:
        return getattr(requests, name)

    def Session(self) -> requests.Session:  # noqa: N802 - the name instaloader calls
        session = requests.Session()
        for host in INSTAGRAM_HOSTS:
            session.mount(f"https://{host}/", _LoopbackAdapter(self.base_url))
        return session


_seam_lock = threading.Lock()


def _route_instaloader_to(base_url: str) -> None:
    # Process-wide (instaloader has no per-context seam); only ever done with a loopback base URL, in
    # tests and the sandbox, where one fake serves the whole process.
    with _seam_lock:
        current = getattr(instaloadercontext, "requests")  # noqa: B009 - not re-exported for mypy
        if isinstance(current, _RequestsThroughLoopback):
            current.base_url = base_url
        else:
            setattr(instaloadercontext, "requests", _RequestsThroughLoopback(base_url))  # noqa: B010


class InstagramReader:
    """Reads the comments under `account`'s most recent posts. Blocking: call it off the event loop."""

    def __init__(
        self,
        *,
        account: str,
        session_file: Path | None = None,
        login: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.account = account
        self.session_file = session_file
        self.login = login
        self.base_url = base_url
        self.timeout = timeout
        self.requests_made = 0

    def _loader(self) -> instaloader.Instaloader:
        if self.base_url:
            _route_instaloader_to(self.base_url)
        loader = instaloader.Instaloader(
            sleep=False,
            quiet=True,
            max_connection_attempts=1,
            request_timeout=self.timeout,
            rate_controller=_NoLongSleep,
            download_pictures=False,
            download_videos=False,
            save_metadata=False,
        )
        if self.session_file is not None and self.login:
            try:
                loader.load_session_from_file(self.login, str(self.session_file))
            except (OSError, ValueError, KeyError, EOFError) as exc:
                raise RoundStopped(
                    "broken",
                    "instagram_monitor.session_file",
                    f"cannot read the session file {self.session_file}: {exc}; make it again with "
                    f"`instaloader --login {self.login}` and point ADALDYK_INSTALOADER_SESSION_FILE at it",
                ) from exc
        return loader

    def read(self, posts: int) -> list[Comment]:
        """Every comment (and thread answer) under the `posts` newest posts, oldest first."""
        if self.session_file is None:
            # instaloader refuses Post.get_comments() without a login, before any request (Instagram
            # shows comments only to logged-in viewers): say so instead of reading posts for nothing.
            raise RoundStopped(
                "broken",
                "instagram_monitor.login_required",
                f"Instagram shows comments only to a logged-in viewer: {_LOGIN_ADVICE}",
            )
        loader = self._loader()
        try:
            return self._read(loader, posts)
        except RoundStopped:
            raise
        except BaseException as exc:
            stopped = _classify(exc)
            if stopped is None:
                raise
            raise stopped from exc
        finally:
            loader.close()  # type: ignore[no-untyped-call]

    def _read(self, loader: instaloader.Instaloader, posts: int) -> list[Comment]:
        context = loader.context
        profile = instaloader.Profile.from_username(context, self.account)
        found: list[Comment] = []
        for post in itertools.islice(profile.get_posts(), posts):
            shortcode, post_id = post.shortcode, str(post.mediaid)
            for comment in post.get_comments():
                found.append(_comment(shortcode, post_id, comment, None))
                for answer in comment.answers:
                    found.append(_comment(shortcode, post_id, answer, str(comment.id)))
        mine = self.account.lower()
        return sorted(
            (c for c in found if c.owner_username.lower() != mine),  # the ministry's own replies
            key=lambda c: (c.created_at, c.comment_id),
        )


def _comment(shortcode: str, post_id: str, item: Any, reply_to: str | None) -> Comment:
    owner = item.owner
    return Comment(
        post_shortcode=shortcode,
        post_id=post_id,
        comment_id=str(item.id),
        # instaloader gives naive UTC (datetime.utcfromtimestamp).
        created_at=item.created_at_utc.replace(tzinfo=UTC),
        text=item.text or "",
        owner_id=str(owner.userid),
        owner_username=owner.username,
        reply_to=reply_to,
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


_LOGIN_ADVICE = (
    "make a new session with `instaloader --login USER` and set ADALDYK_INSTALOADER_SESSION_FILE and "
    "ADALDYK_INSTALOADER_LOGIN"
)


def _classify(exc: BaseException) -> RoundStopped | None:
    """The reasons to stop a round and say so; None: an ordinary error for the supervisor's back-off."""
    for item in _chain(exc):
        if (
            isinstance(item, instaloader.TooManyRequestsException)
            or (isinstance(item, _WouldWait) and item.reason.startswith("429"))
            # A page load (profile page, start page) reports its status only in the message, which
            # instaloader writes as "<status> <reason> ... when accessing <url>".
            or (isinstance(item, instaloader.ConnectionException) and _STATUS_429.match(str(item)))
        ):
            return RoundStopped(
                "degraded",
                "instagram_monitor.rate_limited",
                "Instagram answered 429 Too Many Requests; this round stopped and the next one tries again "
                "(no waiting inside the worker)",
            )
        if isinstance(item, _WouldWait):
            return RoundStopped(
                "degraded",
                "instagram_monitor.budget",
                f"{item}; this round stopped and the next one tries again",
            )
        if isinstance(item, instaloader.LoginRequiredException) or (
            isinstance(item, instaloader.AbortDownloadException) and "login" in str(item).lower()
        ):
            return RoundStopped(
                "broken",
                "instagram_monitor.login_required",
                f"Instagram wants a logged-in session to show the comments ({item}): {_LOGIN_ADVICE}",
            )
        if isinstance(
            item, instaloader.QueryReturnedBadRequestException | instaloader.AbortDownloadException
        ):
            # 400 with checkpoint/challenge/feedback_required: Instagram wants a person to look.
            return RoundStopped(
                "broken",
                "instagram_monitor.refused",
                f"Instagram refused the query ({item}); log in with that account in a browser, clear "
                f"any challenge, then {_LOGIN_ADVICE}",
            )
        if isinstance(item, instaloader.ProfileNotExistsException):
            return RoundStopped("broken", "instagram_monitor.no_such_account", str(item))
    return None
