"""Our own Bots Long Poll loop: `ts` is committed with the batch it confirms, and every `failed` is handled.

vk-api's VkBotLongPoll keeps ts in memory and moves it before the caller has handled the events
(bot_longpoll.py, `check()`), so a crash loses them. Here ts lives in the channel_cursor row and moves
only in the transaction that stored the batch (DESIGN.md invariant 1).

Answers (platforms.md §2a, dev.vk.ru bots-long-poll/getting-started):
- {"ts": "<str>", "updates": [...]}: store the batch and the new ts together;
- {"failed": 1, "ts": <int>}: history outdated or partly lost; go on from the new ts, recording the gap;
- {"failed": 2}: the key expired; get a new key with groups.getLongPollServer and keep our ts;
- {"failed": 3}: key and ts lost; get both anew, recording the gap.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from adaldyk_bots.ports import IntakeSink, RawEvent
from connectors.vk.client import VKClient, VKError

log = logging.getLogger(__name__)

CHANNEL = "vk"


class LongPollAnswerError(Exception):
    """The long-poll server answered something that is not one of the documented shapes."""


@dataclass
class _Session:
    server: str
    key: str


class LongPoller:
    def __init__(
        self,
        *,
        client: VKClient,
        group_id: int,
        wait: int,
        parse: Callable[[bytes], RawEvent],
        on_state: Callable[[str, str], None],
        on_gap: Callable[[dict[str, Any]], None],
        on_events: Callable[[], None],
    ) -> None:
        self.client = client
        self.group_id = group_id
        self.account = str(group_id)
        self.wait = wait
        self.parse = parse
        self.on_state = on_state
        self.on_gap = on_gap
        self.on_events = on_events
        self._session: _Session | None = None
        self._ts: str | None = None
        # `wait` plus a margin: the server holds the request up to `wait` seconds by design.
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(wait + 10.0, connect=10.0))

    def reset(self) -> None:
        """Forget the session and ts: a poller that (re)takes the lock reads ts from the database, where
        another worker may have moved it meanwhile."""
        self._session = None
        self._ts = None

    async def poll_round(self, intake: IntakeSink) -> None:
        """One round for the supervisor, which runs it while this worker holds the community's lock
        (two loops would fight over ts: storage/locks.py). An error says why on the channel's health
        and is raised, so the supervisor logs it and backs off. Network trouble, bad JSON and a
        database that is down lose nothing: nothing was confirmed, so the next request asks for the
        same events again."""
        try:
            await self.poll_once(intake)
        except VKError as exc:
            if exc.code == 5:
                self.on_state(
                    "broken",
                    "the community token was rejected (VK error 5): re-authorize, "
                    "then set a new ADALDYK_VK_TOKEN",
                )
            else:
                self.on_state("degraded", f"groups.getLongPollServer failed: {exc}")
            raise
        except Exception as exc:
            self.on_state("degraded", f"long poll: {type(exc).__name__}: {exc}")
            raise

    async def poll_once(self, intake: IntakeSink) -> int | None:
        """One a_check round. Returns how many events were stored, or None when there were none."""
        if self._session is None or self._ts is None:
            await self._open_session(intake)
        assert self._session is not None and self._ts is not None
        ts = self._ts
        response = await self._http.get(
            self._session.server,
            params={"act": "a_check", "key": self._session.key, "ts": ts, "wait": self.wait},
        )
        answer = _decode(response)
        if "failed" in answer:
            await self._handle_failed(intake, answer, ts)
            return None
        updates, new_ts = answer.get("updates"), answer.get("ts")
        if not isinstance(updates, list) or not isinstance(new_ts, str | int) or isinstance(new_ts, bool):
            raise LongPollAnswerError(f"no updates/ts in the answer: {_preview(answer)}")
        self.on_state("ok", "long poll")
        if not updates and str(new_ts) == ts:
            return None
        # Each update is stored as its own compact JSON: the long-poll answer has no per-event bytes.
        events = [
            self.parse(json.dumps(u, ensure_ascii=False, separators=(",", ":")).encode()) for u in updates
        ]
        result = await asyncio.to_thread(
            intake.store, channel=CHANNEL, account=self.account, events=events, cursor=str(new_ts)
        )
        self._ts = str(new_ts)
        if events:
            self.on_events()
        return result.stored or None

    async def _open_session(self, intake: IntakeSink) -> None:
        fresh = await self._new_server()
        stored = await asyncio.to_thread(intake.cursor, CHANNEL, self.account)
        if stored is None:
            # First start: begin at VK's current position, and remember it at once, so a crash before the
            # first batch does not jump over what arrives meanwhile.
            stored = fresh
            await asyncio.to_thread(
                intake.store, channel=CHANNEL, account=self.account, events=[], cursor=stored
            )
        self._ts = stored

    async def _new_server(self) -> str:
        """groups.getLongPollServer: sets server and key, returns VK's current ts."""
        answer = await self.client.call("groups.getLongPollServer", group_id=self.group_id)
        if not isinstance(answer, dict) or not all(
            isinstance(answer.get(k), str | int) for k in ("server", "key", "ts")
        ):
            raise LongPollAnswerError(f"groups.getLongPollServer answered {_preview(answer)}")
        self._session = _Session(server=str(answer["server"]), key=str(answer["key"]))
        return str(answer["ts"])

    async def _handle_failed(self, intake: IntakeSink, answer: dict[str, Any], ts: str) -> None:
        failed = answer.get("failed")
        if failed == 1 and isinstance(answer.get("ts"), str | int):
            await self._skip_to(
                intake,
                ts,
                str(answer["ts"]),
                "vk.longpoll_failed_1",
                "VK: event history outdated or partly lost (failed 1); continued from the new ts",
            )
        elif failed == 2:
            log.info("vk long poll: key expired (failed 2), getting a new one; ts stays %s", ts)
            self._session = None
            await self._new_server()
        elif failed == 3:
            new_ts = await self._new_server()
            await self._skip_to(
                intake,
                ts,
                new_ts,
                "vk.longpoll_failed_3",
                "VK: key and ts lost (failed 3); continued from the ts of a new key",
            )
        else:
            # Unknown code (the docs say to expect fields they do not describe): a new session is the
            # one step every documented failure allows; keep our ts.
            log.warning("vk long poll: unexpected answer %s; getting a new key", _preview(answer))
            await self._new_server()

    async def _skip_to(self, intake: IntakeSink, before: str, after: str, reason: str, detail: str) -> None:
        text = f"{detail}: events between ts {before} and {after} may never be delivered"
        await asyncio.to_thread(
            intake.record_gap,
            channel=CHANNEL,
            account=self.account,
            reason=reason,
            detail=text,
            cursor_before=before,
            cursor_after=after,
        )
        self._ts = after
        self.on_gap({"reason": reason, "ts_before": before, "ts_after": after})

    async def close(self) -> None:
        await self._http.aclose()


def _decode(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise LongPollAnswerError(f"HTTP {response.status_code} from the long-poll server")
    try:
        answer = response.json()
    except ValueError as exc:
        raise LongPollAnswerError(f"not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise LongPollAnswerError(f"not a JSON object: {_preview(answer)}")
    return answer


def _preview(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)[:200] if not isinstance(value, str) else value[:200]
    return text
