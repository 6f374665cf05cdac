"""The Graph API through facebook-sdk 3.1.0, wrapped: our base URL and version, typed errors, off the loop.

facebook-sdk (mobolic/facebook-sdk, last release 2018) is the transport the design card names. Its
`GraphAPI.request(path, args, post_args, method)` is kept; around it we change, by composition:
- the address: it posts to the hard-coded `https://graph.facebook.com/` + path. A requests adapter mounted
  on that prefix sends to the configured base instead (ADALDYK_GRAPH_API_URL / ADALDYK_INSTAGRAM_API_URL,
  e.g. graph.instagram.com for Instagram Login, or the loopback fake), always with a timeout;
- the version: taken from the configured URL (`.../v23.0`) and put in the path ourselves. The library's
  `version=` check (`^\\d\\.\\d{1,2}$` and a list ending at 3.1) refuses every version since v10.0, so it is
  never passed;
- nested parameters (`recipient`, `message`, `template`): sent as JSON strings in the form body, which
  Graph accepts; requests would otherwise form-encode a dict as its keys only;
- errors: `GraphAPIError` keeps only message/type/code and no HTTP status; `GraphError` has code,
  error_subcode, type, fbtrace_id and the HTTP status (read from the response as it passed the adapter),
  and transport failures get negative codes, so callers classify by number only (send.py);
- threads: requests blocks, so `GraphClient.get/post` run it in the client's own worker threads (a busy
  product never starves another's calls, nor the core's `asyncio.to_thread`);
- pacing: the dispatcher's budget is taken when a send is due, but calls wait for a worker thread and
  then leave together; `limit_rate` spaces them as they leave, where Meta counts them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import facebook
import requests
from requests.adapters import BaseAdapter, HTTPAdapter

__all__ = ["GraphClient", "GraphError", "split_graph_url"]

# The prefix facebook-sdk 3.1.0 puts before every path (facebook/__init__.py, FACEBOOK_GRAPH_URL).
LIBRARY_GRAPH_PREFIX = facebook.FACEBOOK_GRAPH_URL


@dataclass(eq=False)  # not frozen: raising sets attributes (traceback, notes) on an exception
class GraphError(Exception):
    """A Graph API error answer, or a transport failure (negative `code`).

    Graph's envelope (platforms.md §3d, developers.facebook.com/docs/graph-api/guides/error-handling):
    `{"error": {"message", "type", "code", "error_subcode", "error_user_msg", "fbtrace_id"}}`.
    Classify by `code` and `subcode` only: `message` is localized and `http_status` varies for one code
    (Instagram's window error comes with 403, code 2 often with 500)."""

    code: int
    subcode: int | None = None
    type: str = ""
    fbtrace_id: str | None = None
    http_status: int | None = None
    message: str = ""

    TIMEOUT = -1  # no answer in time: the request may have reached Meta (never blind-retry a one-shot)
    NETWORK = -2  # no connection: the request did not reach Meta
    BAD_RESPONSE = -3  # an answer that is not Graph's JSON (a proxy's HTML page, a cut body)

    def __str__(self) -> str:
        sub = f"/{self.subcode}" if self.subcode is not None else ""
        return f"Graph error {self.code}{sub} (HTTP {self.http_status}): {self.message}"


def split_graph_url(url: str) -> tuple[str, str]:
    """`https://graph.facebook.com/v23.0` -> ("https://graph.facebook.com", "v23.0"). The settings check
    the URL ends with the version; anything before it (a proxy's prefix) stays in the base."""
    parts = urlsplit(url.rstrip("/"))
    head, _, version = parts.path.rpartition("/")
    if not version.startswith("v"):
        raise ValueError(f"the Graph URL must end with its version, e.g. /v23.0: {url!r}")
    return f"{parts.scheme}://{parts.netloc}{head}", version


class _Spacing:
    """At most `per_second` request starts in any second: each waits for its slot, 1/per_second after the
    previous one (a token bucket of one token), measured as requests leave."""

    def __init__(self) -> None:
        self.interval = 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:  # slots are handed out in order; sleeping inside keeps them so
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
            if start > now:
                time.sleep(start - now)


class _RoutedAdapter(BaseAdapter):
    """Sends what facebook-sdk addresses to graph.facebook.com to our base, with a timeout; remembers the
    HTTP status per thread (the library's error keeps none)."""

    def __init__(self, base_url: str, timeout: float, seen: threading.local, spacing: _Spacing) -> None:
        super().__init__()
        self._base = base_url.rstrip("/") + "/"
        self._timeout = timeout
        self._seen = seen
        self._spacing = spacing
        self._inner = HTTPAdapter(pool_maxsize=16)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        assert request.url is not None
        request.url = self._base + request.url[len(LIBRARY_GRAPH_PREFIX) :]
        if not kwargs.get("timeout"):
            kwargs["timeout"] = self._timeout
        self._spacing.wait()
        response = self._inner.send(request, **kwargs)
        self._seen.status = response.status_code
        return response

    def close(self) -> None:
        self._inner.close()


def _form_value(value: Any) -> Any:
    """Graph reads nested parameters as JSON strings in a form body (`recipient={"id":"..."}`)."""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class GraphClient:
    """One Graph base URL (version included). Tokens are per call: one client serves a Page token and a
    WhatsApp token alike. Thread-safe: facebook-sdk's GraphAPI holds no per-call state but its session."""

    def __init__(self, *, api_url: str, timeout: float = 10.0, workers: int = 8) -> None:
        self.base_url, self.version = split_graph_url(api_url)
        self._seen = threading.local()
        self._spacing = _Spacing()
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph")
        self.session = requests.Session()
        self.session.mount(
            LIBRARY_GRAPH_PREFIX, _RoutedAdapter(self.base_url, timeout, self._seen, self._spacing)
        )
        # No `version=` (see the module docstring); no access_token: each call brings its own.
        self._graph = facebook.GraphAPI(session=self.session, timeout=timeout)

    def request_blocking(
        self,
        method: str,
        path: str,
        *,
        token: str,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One Graph call; `path` without the version (`"123/messages"`). Raises GraphError."""
        args = {k: _form_value(v) for k, v in (params or {}).items() if v is not None}
        post_args = None
        if method.upper() == "POST":
            post_args = {k: _form_value(v) for k, v in (data or {}).items() if v is not None}
            post_args["access_token"] = token
        else:
            args["access_token"] = token
        self._seen.status = None
        try:
            result = self._graph.request(
                f"{self.version}/{path.lstrip('/')}",
                args=args,
                post_args=post_args,
                method=method.upper(),
            )
        except facebook.GraphAPIError as exc:
            raise self._error(exc) from None
        except requests.Timeout:
            raise GraphError(GraphError.TIMEOUT, message="no answer from the Graph API in time") from None
        except requests.RequestException as exc:
            raise GraphError(GraphError.NETWORK, message=f"{type(exc).__name__}: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            # No content-type, or a body that is not JSON (facebook-sdk reads headers["content-type"]).
            raise GraphError(
                GraphError.BAD_RESPONSE,
                http_status=getattr(self._seen, "status", None),
                message=f"unexpected answer: {type(exc).__name__}: {exc}",
            ) from None
        if not isinstance(result, dict):
            raise GraphError(
                GraphError.BAD_RESPONSE,
                http_status=getattr(self._seen, "status", None),
                message=f"unexpected answer: {result!r:.200}",
            )
        return result

    def _error(self, exc: facebook.GraphAPIError) -> GraphError:
        status = getattr(self._seen, "status", None)
        body = exc.result.get("error") if isinstance(exc.result, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("code"), int):
            # "Maintype was not text, image, or querystring": an answer that is not Graph's JSON.
            return GraphError(GraphError.BAD_RESPONSE, http_status=status, message=str(exc.message)[:300])
        subcode = body.get("error_subcode")
        trace = body.get("fbtrace_id")
        return GraphError(
            code=body["code"],
            subcode=subcode if isinstance(subcode, int) else None,
            type=str(body.get("type") or ""),
            fbtrace_id=trace if isinstance(trace, str) else None,
            http_status=status,
            message=str(body.get("message") or "")[:500],
        )

    def limit_rate(self, per_second: float) -> None:
        """Space this client's calls as they leave: at most `per_second` in any second (0: unpaced)."""
        self._spacing.interval = 1.0 / per_second if per_second else 0.0

    async def get(self, path: str, params: Mapping[str, Any] | None = None, *, token: str) -> dict[str, Any]:
        return await self._call("GET", path, token, params=params)

    async def post(self, path: str, data: Mapping[str, Any] | None = None, *, token: str) -> dict[str, Any]:
        return await self._call("POST", path, token, data=data)

    async def _call(self, method: str, path: str, token: str, **kw: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, lambda: self.request_blocking(method, path, token=token, **kw)
        )

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.session.close()
