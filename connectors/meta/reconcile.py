"""Reconciliation: find the direct messages Meta's webhook never delivered (the loss Chatwoot's users
report most: Instagram messages that never arrive, with nothing in any log), and the hourly token check.

Every ADALDYK_META_RECONCILE_SECONDS the Conversations API is read with each conversation's recent
messages: `GET /{page-id}/conversations?platform=messenger`, Instagram through the Page
`GET /me/conversations?platform=instagram` (the Page token's /me is the Page, whose id this channel does
not hold), Instagram Login `GET /{ig-account-id}/conversations?platform=instagram`; at most 2 calls a
second per account (its published limit). Each message from a citizen becomes the same stored item a
webhook delivery would have made, with the same dedup key (`mid:<id>`), through the same IntakeSink: a
message already stored is a duplicate and dropped there, so nothing is stored twice, whichever comes
first. What is new is counted on /healthz (`recovered_by_reconciliation`).

How far back: from where the last pass began (kept as the channel's cursor, in the transaction that
stores what it found) less an hour of overlap, so an outage of the service is covered however long;
on the very first pass, one period back only: the history from before the channel was connected is
not imported as new appeals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from adaldyk_bots.ports import IntakeSink, LoopSpec
from connectors.meta.graph import GraphError
from connectors.meta.parser import OBJECT_OF_CHANNEL, dump_item

if TYPE_CHECKING:
    from connectors.meta.connector import MetaConnector

log = logging.getLogger(__name__)

CALLS_PER_SECOND = 2.0  # the Conversations API's published limit per account (platforms.md §4)
TOKEN_CHECK_SECONDS = 3600.0
CONVERSATIONS_PER_ROUND = 25
MESSAGES_PER_CONVERSATION = 20
PLATFORM = {"facebook": "messenger", "instagram": "instagram"}
MAX_PAGES = 8  # pages of CONVERSATIONS_PER_ROUND threads, newest first, while they reach the horizon
OVERLAP = timedelta(hours=1)  # a message stamped just before the last pass began, seen only after it


def graph_time_ms(value: object) -> int | None:
    """Graph's `created_time` ("2024-05-01T10:00:00+0000") as epoch milliseconds, like a webhook's."""
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").timestamp() * 1000)
    except ValueError:
        try:
            return int(datetime.fromisoformat(value).timestamp() * 1000)
        except ValueError:
            return None


def _next_page(answer: dict[str, Any], horizon: datetime) -> str | None:
    """The `after` cursor of the next page of threads, when this page's oldest thread was still updated
    after the horizon (Graph lists threads by `updated_time`, newest first)."""
    paging = answer.get("paging")
    cursors = paging.get("cursors") if isinstance(paging, dict) else None
    after = cursors.get("after") if isinstance(cursors, dict) else None
    data = answer.get("data")
    if not isinstance(after, str) or not after or not isinstance(data, list) or not data:
        return None
    last = data[-1].get("updated_time") if isinstance(data[-1], dict) else None
    updated = graph_time_ms(last)
    if updated is not None and updated < int(horizon.timestamp() * 1000):
        return None
    return after


class Reconciler:
    def __init__(self, connector: MetaConnector) -> None:
        self.connector = connector
        self._last_call = 0.0
        self.token_check_seconds = TOKEN_CHECK_SECONDS

    @property
    def interval(self) -> float:
        return float(self.connector.settings.meta_reconcile_seconds)

    @property
    def path(self) -> str:
        c = self.connector
        through_page = c.name == "instagram" and not c.settings.instagram_login
        return "me/conversations" if through_page else f"{c.account}/conversations"

    def loop(self, intake: IntakeSink) -> LoopSpec:
        c = self.connector

        async def round_() -> None:
            await self.reconcile_once(intake)
            await asyncio.sleep(self.interval)

        return LoopSpec(
            name=f"{c.name}:reconcile:{c.account}",
            run_round=round_,
            lock=f"meta:reconcile:{c.name}:{c.account}",
            period=self.interval + 120.0,
        )

    def token_loop(self) -> LoopSpec:
        """The hourly token check (start() made the first). Its own loop, without a lock: every process
        keeps its own /healthz state, and reconciliation may run only once a day, or in another worker."""
        c = self.connector

        async def round_() -> None:
            await asyncio.sleep(self.token_check_seconds)
            await c.check_token()

        return LoopSpec(
            name=f"{c.name}:token_check:{c.account}", run_round=round_, period=TOKEN_CHECK_SECONDS
        )

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """One Graph call, at most CALLS_PER_SECOND per account."""
        wait = self._last_call + 1.0 / CALLS_PER_SECOND - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_call = time.monotonic()
        return await self.connector.graph.get(path, params, token=self.connector.token)

    async def reconcile_once(self, intake: IntakeSink) -> int:
        """One pass over recent conversations; returns how many messages were new (recovered)."""
        c = self.connector
        started = datetime.now(UTC)
        horizon = self._horizon(await asyncio.to_thread(intake.cursor, c.name, c.account), started)
        fields = f"messages.limit({MESSAGES_PER_CONVERSATION}){{id,message,from,created_time}},updated_time"
        params: dict[str, Any] = {
            "platform": PLATFORM[c.name],
            "fields": fields,
            "limit": CONVERSATIONS_PER_ROUND,
        }
        events = []
        for _page in range(MAX_PAGES):
            try:
                answer = await self._get(self.path, params)
            except GraphError as exc:
                if exc.code == 190:
                    await c.check_token()
                log.warning("%s %s: reconciliation could not read conversations: %s", c.name, c.account, exc)
                raise
            events += [c.parse_payload(p) for p in self.items(answer, since=horizon)]
            after = _next_page(answer, horizon)
            if after is None:
                break
            params = {**params, "after": after}
        result = await asyncio.to_thread(
            intake.store, channel=c.name, account=c.account, events=events, cursor=started.isoformat()
        )
        if result.stored:
            c.health.extra["recovered_by_reconciliation"] += result.stored
            log.warning(
                "%s %s: reconciliation found %d message(s) the webhook never delivered",
                c.name,
                c.account,
                result.stored,
            )
        return result.stored

    def _horizon(self, cursor: str | None, started: datetime) -> datetime:
        try:
            last = datetime.fromisoformat(cursor) if cursor else None
        except ValueError:
            last = None
        if last is None or last.tzinfo is None:
            return started - timedelta(seconds=self.interval)
        return last - OVERLAP

    def items(self, answer: dict[str, Any], *, since: datetime | None = None) -> list[bytes]:
        """The citizens' messages of a /conversations answer (from `since` on) as webhook-shaped items."""
        c = self.connector
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        out = []
        conversations = answer.get("data")
        for conversation in conversations if isinstance(conversations, list) else []:
            messages = conversation.get("messages") if isinstance(conversation, dict) else None
            data = messages.get("data") if isinstance(messages, dict) else None
            for message in data if isinstance(data, list) else []:
                if not isinstance(message, dict) or not isinstance(message.get("id"), str):
                    continue
                sender = message.get("from")
                sender_id = str(sender.get("id")) if isinstance(sender, dict) else ""
                at = graph_time_ms(message.get("created_time"))
                if not sender_id or sender_id == c.account or at is None:
                    continue  # ours, or unreadable: nothing to recover
                if since_ms is not None and at < since_ms:
                    continue  # before the horizon: stored long ago, or history from before us
                text = str(message.get("message") or "")
                found: dict[str, Any] = {"mid": message["id"], "text": text}
                if not text:
                    # A photo, a voice note... the list gives no content: never stored as "empty" (that
                    # would make the webhook's later delivery of it a duplicate and lose it).
                    found["attachments"] = [{"type": "unknown", "payload": {"recovered": True}}]
                item = {
                    "sender": {"id": sender_id},
                    "recipient": {"id": c.account},
                    "timestamp": at,
                    "message": found,
                }
                out.append(
                    dump_item(
                        {
                            "object": OBJECT_OF_CHANNEL[c.name],
                            "entry_id": c.account,
                            "entry_time": at,
                            "kind": "messaging",
                            "item": item,
                            "recovered_by": "reconciliation",
                        }
                    )
                )
        return out
