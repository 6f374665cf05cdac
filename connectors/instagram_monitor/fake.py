"""A fake of the Instagram web endpoints instaloader 4.16 calls to read a profile's posts and their
comments, on loopback (reader.py routes www.instagram.com and i.instagram.com here).

Shapes follow what instaloader parses (instaloader/structures.py and instaloadercontext.py, 4.16):
the profile page embeds its GraphQL results as `<script type="application/json">` with
`__bbox.result.data.xig_user_by_username`; the start page carries the web app's `DTSGInitialData`,
`LSD` and `IG_USER_EIMU` tokens; POST /graphql/query and /api/graphql answer by `doc_id`; comments come
from GET /graphql/query?query_hash=97b41c52301f77ce508f55e66d17620e (up to 12) or the iPhone API
/api/v1/media/{id}/comments/ (more), which instaloader calls with `Authorization: Bearer IGT:2:<base64
of {"ds_user_id", "sessionid"}>` instead of cookies.

Refusals are Instagram's: a request without a live session (and any request while `login_wall` is on)
is redirected 302 to https://www.instagram.com/accounts/login/; a forced 429 answers
`{"message": "Please wait a few minutes before you try again.", "status": "fail"}` (the body instaloader
users report with it, e.g. instaloader/instaloader issues #2032 and #2410).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from adaldyk_bots.loopback import LoopbackServer

__all__ = ["FakeInstagram"]

PROFILE_DOC = "27937681195819736"
TIMELINE_DOC = "29104886249145907"
POST_DOC = "27128499623469141"
COMMENTS_QUERY_HASH = "97b41c52301f77ce508f55e66d17620e"
IPHONE_PAGE = 15


@dataclass
class _Comment:
    id: str
    created_at: int
    text: str
    owner_id: str
    owner_username: str
    answers: list[_Comment] = field(default_factory=list)


@dataclass
class _Post:
    code: str
    pk: str
    taken_at: int
    caption: str
    comments: list[_Comment] = field(default_factory=list)

    def count(self) -> int:
        return len(self.comments) + sum(len(c.answers) for c in self.comments)


class FakeInstagram(LoopbackServer):
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port, name="fake-instagram")
        self.requests: list[dict[str, Any]] = []  # every request: method, host, path, doc_id / query_hash
        self.login_wall = False
        self._forced: dict[int, int] = {}  # index in `requests` -> the status to answer it with
        self._lock = threading.RLock()
        self._sessions: dict[str, str] = {}  # sessionid -> user id
        self._account: dict[str, Any] = {}
        self._posts: list[_Post] = []
        self._ids = itertools.count(17_900_000_000_000_001)
        self.app = Starlette(
            routes=[
                Route("/www.instagram.com/", self._start_page, methods=["GET"]),
                Route("/www.instagram.com/graphql/query", self._graphql, methods=["GET", "POST"]),
                Route("/www.instagram.com/api/graphql", self._web_graphql, methods=["POST"]),
                Route("/www.instagram.com/{username}/", self._profile_page, methods=["GET"]),
                Route(
                    "/i.instagram.com/api/v1/media/{media_id}/comments/",
                    self._iphone_comments,
                    methods=["GET"],
                ),
            ]
        )

    # --- control ----------------------------------------------------------------------------------

    def set_account(
        self, username: str, *, pk: str = "5720000001", full_name: str = "Экология министрлігі"
    ) -> None:
        with self._lock:
            self._account = {"username": username, "pk": pk, "full_name": full_name}

    def session_cookies(self, login: str, *, user_id: str = "6100000001") -> dict[str, str]:
        """A live session of `login`, as `instaloader --login` saves it (a cookie dict)."""
        sessionid = f"{user_id}%3Afake{len(self._sessions)}%3A1"
        with self._lock:
            self._sessions[sessionid] = user_id
        return {
            "sessionid": sessionid,
            "ds_user_id": user_id,
            "csrftoken": "fakecsrf0123",
            "mid": "Z0fake",
            "ig_did": "D1",
        }

    def expire_sessions(self) -> None:
        with self._lock:
            self._sessions.clear()

    def add_post(self, caption: str, *, taken_at: int) -> str:
        with self._lock:
            pk = str(next(self._ids))
            code = f"DA{pk[-9:]}"  # any shortcode-like text: the fake finds posts by it
            self._posts.insert(0, _Post(code=code, pk=pk, taken_at=taken_at, caption=caption))
            return code

    def add_comment(
        self,
        post_code: str,
        text: str,
        *,
        user_id: str,
        username: str,
        created_at: int,
        reply_to: str | None = None,
    ) -> str:
        with self._lock:
            post = next(p for p in self._posts if p.code == post_code)
            comment = _Comment(str(next(self._ids)), created_at, text, user_id, username)
            if reply_to is None:
                post.comments.append(comment)
            else:
                next(c for c in post.comments if c.id == reply_to).answers.append(comment)
            return comment.id

    def force_status(self, status: int, *, times: int = 1, after: int = 0) -> None:
        """Answer `times` requests with `status` (429: Instagram's body), starting `after` requests from
        now (0: the very next one)."""
        with self._lock:
            start = len(self.requests) + after
            self._forced.update({start + i: status for i in range(times)})

    def post_codes(self) -> list[str]:
        with self._lock:
            return [p.code for p in self._posts]

    def calls(self, kind: str) -> int:
        return sum(1 for r in self.requests if r["kind"] == kind)

    # --- common -----------------------------------------------------------------------------------

    def _note(self, request: Request, kind: str, **extra: Any) -> Response | None:
        with self._lock:
            status = self._forced.pop(len(self.requests), None)
            self.requests.append({"method": request.method, "path": request.url.path, "kind": kind, **extra})
            if self.login_wall:
                return _login_redirect(request)
            if status is not None:
                if status == 429:
                    return JSONResponse(
                        {"message": "Please wait a few minutes before you try again.", "status": "fail"}, 429
                    )
                return JSONResponse({"message": "", "status": "fail"}, status)
        return None

    def _logged_in(self, request: Request) -> bool:
        sessionid = request.cookies.get("sessionid", "")
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer IGT:2:"):
            try:
                sessionid = json.loads(base64.b64decode(auth.removeprefix("Bearer IGT:2:")))["sessionid"]
            except (ValueError, KeyError, binascii.Error):
                return False
        with self._lock:
            return sessionid in self._sessions

    def _user(self) -> dict[str, Any]:
        a = self._account
        return {
            "pk": a["pk"],
            "id": a["pk"],
            "username": a["username"],
            "full_name": a["full_name"],
            "is_private": False,
            "is_verified": True,
            "profile_pic_url": f"https://scontent.cdninstagram.com/{a['pk']}.jpg",
            "media_count": len(self._posts),
            "follower_count": 12840,
            "following_count": 12,
            "biography": "Қазақстан Республикасы Экология министрлігі",
            "friendship_status": {"following": False, "followed_by": False, "blocking": False},
        }

    def _media(self, post: _Post) -> dict[str, Any]:
        return {
            "code": post.code,
            "pk": post.pk,
            "id": f"{post.pk}_{self._account['pk']}",
            "media_type": 1,
            "taken_at": post.taken_at,
            "caption": {"text": post.caption},
            "has_liked": False,
            "like_count": 41,
            "comment_count": post.count(),
            "user": {
                k: self._user()[k] for k in ("pk", "username", "is_private", "full_name", "profile_pic_url")
            },
            "image_versions2": {"candidates": [{"url": f"https://scontent.cdninstagram.com/{post.pk}.jpg"}]},
        }

    # --- endpoints --------------------------------------------------------------------------------

    async def _profile_page(self, request: Request) -> Response:
        refused = self._note(request, "profile_page")
        if refused is not None:
            return refused
        username = request.path_params["username"].lower()
        if not self._account or username != self._account["username"]:
            return HTMLResponse("<html><body>Sorry, this page isn't available.</body></html>", 404)
        user = self._user()
        user["polaris_ordered_timeline_connection"] = {"edges": [], "page_info": {"has_next_page": False}}
        embedded = {
            "require": [
                [
                    "ScheduledServerJS",
                    "handle",
                    None,
                    [
                        {
                            "__bbox": {
                                "require": [
                                    [
                                        "RelayPrefetchedStreamCache",
                                        "next",
                                        [],
                                        [
                                            "adp_PolarisProfilePageContentQueryRelayPreloader_0",
                                            {
                                                "__bbox": {
                                                    "complete": True,
                                                    "result": {"data": {"xig_user_by_username": user}},
                                                }
                                            },
                                        ],
                                    ]
                                ]
                            }
                        }
                    ],
                ]
            ]
        }
        script = json.dumps(embedded, ensure_ascii=False).replace("</", "<\\/")
        return HTMLResponse(
            f'<!DOCTYPE html><html><head></head><body><script type="application/json" data-sjs>{script}'
            "</script></body></html>"
        )

    async def _start_page(self, request: Request) -> Response:
        refused = self._note(request, "start_page")
        if refused is not None:
            return refused
        html = (
            '<!DOCTYPE html><html><head><script>requireLazy(["ServerJS"],function(){});</script>'
            '<script type="application/json">{"define":[["DTSGInitialData",[],{"token":"NAcfakeDTSG"},258],'
            '["LSD",[],{"token":"fakeLSDtoken"},323]],"IG_USER_EIMU":"17841400000000001"}</script></head>'
            "<body></body></html>"
        )
        return HTMLResponse(html)

    async def _graphql(self, request: Request) -> Response:
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            params.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
        doc, query_hash = params.get("doc_id"), params.get("query_hash")
        refused = self._note(request, f"graphql:{doc or query_hash}")
        if refused is not None:
            return refused
        if not self._logged_in(request):
            return _login_redirect(request)
        variables = json.loads(params.get("variables") or "{}")
        with self._lock:
            if doc == PROFILE_DOC:
                return JSONResponse({"data": {"user": self._user()}, "status": "ok"})
            if doc == POST_DOC:
                post = self._post(variables.get("shortcode"))
                items = [self._media(post)] if post else []
                return JSONResponse(
                    {"data": {"xdt_api__v1__media__shortcode__web_info": {"items": items}}, "status": "ok"}
                )
            if query_hash == COMMENTS_QUERY_HASH:
                post = self._post(variables.get("shortcode"))
                if post is None:
                    return JSONResponse({"data": {"shortcode_media": None}, "status": "ok"})
                edges = [{"node": _graphql_comment(c, with_answers=True)} for c in post.comments[:12]]
                connection = {
                    "count": post.count(),
                    "page_info": {"has_next_page": False, "end_cursor": None},
                    "edges": edges,
                }
                return JSONResponse(
                    {
                        "data": {"shortcode_media": {"edge_media_to_parent_comment": connection}},
                        "status": "ok",
                    }
                )
        return JSONResponse({"message": "unknown query", "status": "fail"}, 400)

    async def _web_graphql(self, request: Request) -> Response:
        form = await request.form()
        doc = form.get("doc_id")
        refused = self._note(request, f"api_graphql:{doc}")
        if refused is not None:
            return refused
        if not self._logged_in(request):
            return _login_redirect(request)
        if doc != TIMELINE_DOC or form.get("lsd") != "fakeLSDtoken":
            return JSONResponse({"errors": [{"message": "execution error"}]}, 400)
        with self._lock:
            edges = [{"node": self._media(p), "cursor": p.pk} for p in self._posts]
        connection = {"edges": edges, "page_info": {"has_next_page": False, "end_cursor": None}}
        return JSONResponse({"data": {"xdt_api__v1__feed__user_timeline_graphql_connection": connection}})

    async def _iphone_comments(self, request: Request) -> Response:
        refused = self._note(request, "iphone_comments")
        if refused is not None:
            return refused
        if not self._logged_in(request):
            return _login_redirect(request, host="i.instagram.com")
        media_id = request.path_params["media_id"]
        with self._lock:
            post = next((p for p in self._posts if p.pk == media_id), None)
            if post is None:
                return JSONResponse({"message": "Media not found or unavailable", "status": "fail"}, 400)
            start = int(request.query_params.get("min_id") or 0)
            page = post.comments[start : start + IPHONE_PAGE]
            more = start + IPHONE_PAGE < len(post.comments)
            body = {
                "comments": [_iphone_comment(c) for c in page],
                "comment_count": post.count(),
                "next_min_id": str(start + IPHONE_PAGE) if more else None,
                "status": "ok",
            }
        return JSONResponse(body)

    def _post(self, shortcode: Any) -> _Post | None:
        return next((p for p in self._posts if p.code == shortcode), None)


def _login_redirect(request: Request, *, host: str = "www.instagram.com") -> Response:
    path = request.url.path.split("/", 2)[-1]
    return Response(
        status_code=302, headers={"location": f"https://{host}/accounts/login/?next=/{quote(path)}"}
    )


def _owner(c: _Comment) -> dict[str, Any]:
    return {
        "id": c.owner_id,
        "username": c.owner_username,
        "is_verified": False,
        "profile_pic_url": f"https://scontent.cdninstagram.com/u{c.owner_id}.jpg",
    }


def _graphql_comment(c: _Comment, *, with_answers: bool) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": c.id,
        "created_at": c.created_at,
        "text": c.text,
        "owner": _owner(c),
        "edge_liked_by": {"count": 0},
        "did_report_as_spam": False,
    }
    if with_answers:
        node["edge_threaded_comments"] = {
            "count": len(c.answers),
            "page_info": {"has_next_page": False, "end_cursor": None},
            "edges": [{"node": _graphql_comment(a, with_answers=False)} for a in c.answers],
        }
    return node


def _iphone_user(c: _Comment) -> dict[str, Any]:
    return {
        "pk": c.owner_id,
        "username": c.owner_username,
        "is_private": False,
        "full_name": "",
        "profile_pic_url": f"https://scontent.cdninstagram.com/u{c.owner_id}.jpg",
    }


def _iphone_comment(c: _Comment) -> dict[str, Any]:
    return {
        "pk": c.id,
        "created_at": c.created_at,
        "text": c.text,
        "comment_like_count": 0,
        "user": _iphone_user(c),
        "child_comment_count": len(c.answers),
        "preview_child_comments": [
            {
                "pk": a.id,
                "created_at": a.created_at,
                "text": a.text,
                "comment_like_count": 0,
                "user": _iphone_user(a),
            }
            for a in c.answers
        ],
    }
