"""A connector of our own port for core tests that need a channel but no platform: it accepts every
send (recording it) and receives nothing. Tests subclass it to change `name` or what `send` answers."""

from __future__ import annotations

from typing import Any, ClassVar

from adaldyk_bots.domain import Delivered, ReplyTarget, SendResult
from adaldyk_bots.ports import ChannelHealth, RateScope, RawEvent


class StandInConnector:
    name: ClassVar[str] = "plain"
    text_limit: ClassVar[int] = 4000

    def __init__(self) -> None:
        self.sent: list[tuple[ReplyTarget, str]] = []

    @property
    def account(self) -> str:
        return "acc"

    @property
    def health(self) -> ChannelHealth:
        return ChannelHealth(state="ok")

    def measure_text(self, text: str) -> int:
        return len(text)

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        return []

    def parse_payload(self, payload: bytes) -> RawEvent:
        raise NotImplementedError

    def webhooks(self) -> list[Any]:
        return []

    async def start(self, intake: Any, *, receive: bool = True) -> None:
        return None

    def background_loops(self, intake: Any) -> list[Any]:
        return []

    async def stop(self) -> None:
        return None

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult:
        self.sent.append((target, text))
        return Delivered(f"{self.name}-{len(self.sent)}")
