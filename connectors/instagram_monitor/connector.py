"""The instaloader monitor as a channel: a poller that reads comments under the ministry's recent public
posts and stores each through the intake (dedup by comment id). It has no way to answer: every send
fails with `instagram_monitor.cannot_reply`, so the appeal shows its notices failed, to be answered by
hand (in the Instagram app, or through the Meta `instagram` channel when that is configured)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import ClassVar

from adaldyk_bots.domain import Failed, ReplyTarget, SendResult
from adaldyk_bots.ports import (
    ChannelHealth,
    ConnectorFactory,
    IntakeSink,
    LoopSpec,
    RateScope,
    RawEvent,
    WebhookRoute,
    poller_lock_name,
)
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import utcnow
from connectors.instagram_monitor.parser import (
    CHANNEL,
    COMMENT_TEXT_LIMIT,
    comment_event,
    parse_comment_payload,
)
from connectors.instagram_monitor.reader import InstagramReader, RoundStopped
from connectors.instagram_monitor.settings import InstaloaderSettings

log = logging.getLogger(__name__)

# Comment ids this process has stored, so each round hands the intake only new ones (every round reads
# the same recent comments again). Bounded; after a restart the intake's dedup keys do the same job.
SEEN_LIMIT = 50_000

CANNOT_REPLY = "instagram_monitor.cannot_reply"
CANNOT_REPLY_DETAIL = (
    "answer by hand: this appeal came from a comment read by the Instagram monitor (instaloader), "
    "which can only read; reply to the comment in Instagram, or reach the citizen another way"
)


class InstagramMonitorConnector:
    name: ClassVar[str] = CHANNEL
    text_limit: ClassVar[int] = COMMENT_TEXT_LIMIT
    settings_model: ClassVar[type[InstaloaderSettings]] = InstaloaderSettings

    def __init__(self, *, reader: InstagramReader, posts: int = 5, interval: float = 900.0) -> None:
        self.reader = reader
        self.posts = posts
        self.interval = interval
        self._account = reader.account
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._health = ChannelHealth(
            detail="not read yet",
            extra={"reads": "comments only", "answers": "by hand", "rounds_stopped_since_start": 0},
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> InstagramMonitorConnector | None:
        own = settings.channel(InstaloaderSettings)
        if own.instaloader_account is None:
            return None
        reader = InstagramReader(
            account=own.instaloader_account,
            session_file=own.instaloader_session_file,
            login=own.instaloader_login,
            base_url=own.instaloader_base_url,
            timeout=own.instaloader_timeout_seconds,
        )
        return cls(reader=reader, posts=own.instaloader_posts, interval=own.instaloader_interval_seconds)

    @property
    def account(self) -> str:
        return self._account

    @property
    def health(self) -> ChannelHealth:
        return self._health

    def measure_text(self, text: str) -> int:
        return len(text)

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        return [RateScope(f"{CHANNEL}:{self._account}", 1)]

    def parse_payload(self, payload: bytes) -> RawEvent:
        return parse_comment_payload(payload, account=self._account)

    def webhooks(self) -> Sequence[WebhookRoute]:
        return []

    async def start(self, intake: IntakeSink, *, receive: bool = True) -> None:
        if not receive:
            self._set_health("ok", "sending is impossible for this channel; comments are read by the worker")

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        async def run_round() -> None:
            await self.read_round(intake)
            # The pace between rounds; a stopped round waits the same, never instaloader's half hour.
            await asyncio.sleep(self.interval)

        return [
            LoopSpec(
                name=f"{CHANNEL}:poller:{self._account}",
                run_round=run_round,
                lock=poller_lock_name(CHANNEL, self._account),
                on_standby=lambda: self._set_health("ok", "standby: another worker reads this account"),
                period=self.interval + 4 * self.reader.timeout,
            )
        ]

    async def read_round(self, intake: IntakeSink) -> int:
        """One pass over the recent posts; returns how many new comments were stored."""
        try:
            comments = await asyncio.to_thread(self.reader.read, self.posts)
        except RoundStopped as stop:
            self._health.extra["rounds_stopped_since_start"] += 1
            self._health.extra["last_stop"] = {"code": stop.code, "at": utcnow().isoformat()}
            self._set_health(stop.state, f"{stop.code}: {stop.detail}")
            return 0
        fresh = [c for c in comments if c.comment_id not in self._seen]
        events = [comment_event(c, account=self._account) for c in fresh]
        result = await asyncio.to_thread(intake.store, channel=CHANNEL, account=self._account, events=events)
        for c in fresh:  # stored now (or already before): the intake committed the batch
            self._seen[c.comment_id] = None
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)
        now = utcnow().isoformat()
        self._health.extra["last_round_at"] = now
        if result.stored:
            self._health.last_event_at = now
        self._set_health(
            "ok", f"read {len(comments)} comment(s) under the {self.posts} newest posts; {result.stored} new"
        )
        return result.stored

    async def stop(self) -> None:
        return None

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        return Failed(CANNOT_REPLY, CANNOT_REPLY_DETAIL)

    def _set_health(self, state: str, detail: str) -> None:
        if (self._health.state, self._health.detail) != (state, detail):
            log.log(logging.INFO if state == "ok" else logging.WARNING, "%s: %s (%s)", CHANNEL, state, detail)
        self._health.state, self._health.detail = state, detail


_FACTORY: ConnectorFactory = InstagramMonitorConnector
