"""The boundary between the core and the channel connectors (loaded by entry point, never by name).

A connector implements `Connector` (and its class `ConnectorFactory`); the core hands it an `IntakeSink`
to store what it receives, and mounts the `WebhookRoute`s it declares on the one webhook pipeline
(`adaldyk_bots/webhooks.py`: handshake → verify → route → store → 2xx).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast, runtime_checkable

from adaldyk_bots.domain import (
    ALWAYS_OPEN,
    ParseOutcome,
    ReplyTarget,
    SendContext,
    SendResult,
    WindowDecision,
)
from adaldyk_bots.registry import CONNECTOR_GROUP, installed_connectors

if TYPE_CHECKING:
    from adaldyk_bots.settings import ChannelSettings, Settings
    from adaldyk_bots.storage.locks import PollerLock

__all__ = [
    "CONNECTOR_GROUP",
    "ChannelHealth",
    "Connector",
    "ConnectorFactory",
    "ContextualSend",
    "Delivery",
    "IntakeResult",
    "IntakeSink",
    "LoopSpec",
    "RateScope",
    "RawEvent",
    "ReplyWindows",
    "WebhookReply",
    "WebhookRequest",
    "WebhookRoute",
    "load_connector_factories",
    "poller_lock_name",
    "reply_window",
]


@dataclass(frozen=True)
class RawEvent:
    """One authentic item from a platform, before it touches the database."""

    dedup_key: str  # unique per (channel, account), e.g. "update:123456"
    payload: bytes  # the exact bytes the platform sent us
    outcomes: Sequence[ParseOutcome]  # usually one; a batch envelope may carry several


@dataclass
class IntakeResult:
    """What one `IntakeSink.store` call did with a batch."""

    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    ignored: int = 0


class IntakeSink(Protocol):
    """What a connector may do with intake: store batches (with its cursor), read the cursor, record a
    gap the platform told it about, and take the lock that makes it the one poller of an account."""

    def store(
        self, *, channel: str, account: str, events: Sequence[RawEvent], cursor: str | None = None
    ) -> IntakeResult:
        """One transaction for the whole batch and the poller's new cursor: both land, or neither."""
        ...

    def cursor(self, channel: str, account: str) -> str | None: ...

    def record_gap(
        self,
        *,
        channel: str,
        account: str,
        reason: str,
        detail: str,
        cursor_before: str | None,
        cursor_after: str,
    ) -> None:
        """The gap record and the new cursor in one transaction (invariant 1)."""
        ...

    def poller_lock(self, channel: str, account: str) -> PollerLock: ...


@dataclass(frozen=True)
class RateScope:
    """A token bucket the dispatcher must respect before a send: `limit` sends per `per_seconds`."""

    key: str
    limit: int
    per_seconds: int = 1


@dataclass
class ChannelHealth:
    state: str = "starting"  # starting | ok | degraded | broken | off
    detail: str = ""
    last_event_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def poller_lock_name(channel: str, account: str) -> str:
    """The lock a poller of one channel account holds, so two workers never poll one account."""
    return f"poller:{channel}:{account}"


@dataclass(frozen=True)
class LoopSpec:
    """A long-running loop for the supervisor (adaldyk_bots/supervisor.py) to run: it calls `run_round`
    again and again, restarts it with backoff after any error, and reports it on /healthz.

    With `lock`, at most one process per database runs the rounds: the supervisor takes the named lock,
    checks it before every round, and stands by (`on_standby`) while another process holds it. A loop
    owns no try/except-and-die and no lock handling of its own: only what one round does."""

    name: str  # unique in a process, shown on /healthz, e.g. "telegram:poller:123"
    run_round: Callable[[], Awaitable[object]]
    lock: str | None = None  # e.g. poller_lock_name(channel, account)
    on_acquire: Callable[[], Awaitable[None]] | None = None  # each time the lock is (re)taken
    on_standby: Callable[[], None] | None = None  # another process holds the lock
    # The longest a healthy round may take (a long poll's timeout): /healthz calls the loop stale only
    # when it has not succeeded for ADALDYK_LOOP_STALE_SECONDS plus this.
    period: float = 0.0
    standby_seconds: float = 2.0  # how often a standby tries the lock


# --- webhooks: what a connector plugs into the core's pipeline ------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    """One request as the pipeline hands it to a connector's handshake and verify functions."""

    method: str  # "GET", "POST"
    headers: Mapping[str, str]  # case-insensitive
    query: Mapping[str, str]
    body: bytes  # the raw bytes, as signed by the platform (e.g. Meta's X-Hub-Signature-256)


@dataclass(frozen=True)
class WebhookReply:
    """The answer to the platform: after commit (`WebhookRoute.reply`) or to a handshake."""

    status: int = 200
    body: bytes | str = b""
    media_type: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One item of a webhook body, and the channel and account it belongs to."""

    channel: str
    account: str
    event: RawEvent


@dataclass(frozen=True)
class WebhookRoute:
    """One connector's part of one webhook endpoint.

    The pipeline, per request: `handshake` (a platform's set-up call, answered without storing;
    None = not a handshake) → `verify` (constant-time; False = 403) → `route` (pure and total: every
    item of the body with its channel and account; if it raises anyway, the body is kept quarantined
    under `quarantine_as`) → one `IntakeSink.store` per (channel, account) → `reply`.

    Several connectors may share one path (Meta's /webhooks/meta serves Facebook, Instagram and
    WhatsApp): each gives the same module-level `dispatch` function (body → key, e.g. Meta's `object`)
    and its own `key`; the route whose key the body carries verifies and routes it.
    """

    path: str  # "/webhooks/<name>"
    verify: Callable[[WebhookRequest], bool]
    route: Callable[[bytes], Sequence[Delivery]]
    quarantine_as: tuple[str, str]  # (channel, account) for an authentic body `route` cannot read
    handshake: Callable[[WebhookRequest], WebhookReply | None] | None = None
    methods: tuple[str, ...] = ("POST",)
    reply: WebhookReply = WebhookReply()
    dispatch: Callable[[bytes], str | None] | None = None  # only on a shared path
    key: str | None = None  # what `dispatch` returns for this route's bodies
    on_stored: Callable[[Sequence[Delivery]], None] | None = None  # after the commit (health, metrics)


# --- connectors -----------------------------------------------------------------------------------


class Connector(Protocol):
    name: ClassVar[str]
    text_limit: ClassVar[int]  # in the unit `measure_text` counts

    @property
    def account(self) -> str: ...

    @property
    def health(self) -> ChannelHealth: ...

    def measure_text(self, text: str) -> int: ...

    def rate_scopes(self, target: ReplyTarget) -> list[RateScope]:
        """Budgets a send to `target` draws on, broadest first (bot, then chat); the last one is paused
        when the platform answers with a retry-after hint."""
        ...

    def parse_payload(self, payload: bytes) -> RawEvent:
        """Pure: turn the exact bytes of one stored event into a RawEvent (used by intake and replay)."""
        ...

    def webhooks(self) -> Sequence[WebhookRoute]:
        """The webhook endpoints this connector serves in its configured mode (none when it polls)."""
        ...

    async def start(self, intake: IntakeSink, *, receive: bool = True) -> None:
        """Check credentials and, when `receive`, prepare receiving (webhook registration; polling
        itself is a loop from `background_loops`, run by the core's supervisor).
        Must not raise on bad credentials: report them through `health`, so other channels keep running."""
        ...

    def background_loops(self, intake: IntakeSink) -> list[LoopSpec]:
        """The loops this process should run for the channel (pollers), asked for after `start` in a
        process that receives (worker). Empty when the channel receives by webhook."""
        ...

    async def stop(self) -> None: ...

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult: ...


@runtime_checkable
class ReplyWindows(Protocol):
    """Optional part of a connector whose platform limits when it may write (Meta's reply windows, a
    comment's one private reply). The dispatcher asks just before each send; a connector without it is
    always open (Telegram, VK)."""

    def reply_window(self, target: ReplyTarget, context: SendContext) -> WindowDecision: ...


@runtime_checkable
class ContextualSend(Protocol):
    """Optional part of a connector whose message itself depends on what it is about (e-mail: the appeal
    number in the subject and the Message-ID, the subject's language, Auto-Submitted on automated notices
    only, In-Reply-To the citizen's last message). The dispatcher reads the SendContext before each send
    and passes it; the flag's presence is what counts."""

    send_takes_context: ClassVar[bool]

    async def send(
        self, target: ReplyTarget, text: str, *, idempotency_key: str, context: SendContext | None = None
    ) -> SendResult: ...


def reply_window(connector: object, target: ReplyTarget, context: SendContext) -> WindowDecision:
    """The connector's decision, or always open for a connector without reply windows."""
    if isinstance(connector, ReplyWindows):
        return connector.reply_window(target, context)
    return ALWAYS_OPEN


class ConnectorFactory(Protocol):
    """What an `adaldyk.connectors` entry point names: usually the connector class itself."""

    @property
    def settings_model(self) -> type[ChannelSettings] | None:
        """The connector's own settings model (its ADALDYK_* variables), validated with the core's at
        start-up; None when it has none. On a class: `settings_model: ClassVar[type[M]] = M`."""
        ...

    def from_settings(self, settings: Settings) -> Connector | None:
        """Build the connector (its own model: `settings.channel(Model)`), or return None when its
        credentials are not configured (channel off)."""
        ...


def load_connector_factories() -> tuple[dict[str, ConnectorFactory], dict[str, str]]:
    """The installed connectors, and the ones that failed to load with the reason."""
    loaded, broken = installed_connectors()
    factories = {name: cast("ConnectorFactory", obj) for name, obj in loaded.items()}
    return factories, dict(broken)
