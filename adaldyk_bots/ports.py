"""The boundary between the core and the channel connectors (loaded by entry point, never by name)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from adaldyk_bots.domain import ParseOutcome, ReplyTarget, SendResult

if TYPE_CHECKING:
    from fastapi import APIRouter

    from adaldyk_bots.intake import Intake
    from adaldyk_bots.settings import Settings

CONNECTOR_GROUP = "adaldyk.connectors"


@dataclass(frozen=True)
class RawEvent:
    """One authentic item from a platform, before it touches the database."""

    dedup_key: str  # unique per (channel, account), e.g. "update:123456"
    payload: bytes  # the exact bytes the platform sent us
    outcomes: Sequence[ParseOutcome]  # usually one; a batch envelope may carry several


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
        """Pure: turn the exact bytes of one event into a RawEvent (used by intake and replay)."""
        ...

    def webhook_router(self, intake: Intake) -> APIRouter | None: ...

    async def start(self, intake: Intake, *, receive: bool = True) -> None:
        """Check credentials and, when `receive`, prepare receiving (webhook registration; polling
        itself is a loop from `background_loops`, run by the core's supervisor).
        Must not raise on bad credentials: report them through `health`, so other channels keep running."""
        ...

    def background_loops(self, intake: Intake) -> list[LoopSpec]:
        """The loops this process should run for the channel (pollers), asked for after `start` in a
        process that receives (worker). Empty when the channel receives by webhook."""
        ...

    async def stop(self) -> None: ...

    async def send(self, target: ReplyTarget, text: str, *, idempotency_key: str) -> SendResult: ...


class ConnectorFactory(Protocol):
    def from_settings(self, settings: Settings) -> Connector | None:
        """Build the connector, or return None when its credentials are not configured (channel off)."""
        ...


def load_connector_factories() -> tuple[dict[str, ConnectorFactory], dict[str, str]]:
    """The installed connectors, and the ones that failed to load with the reason (a broken install
    of one channel must not take the others down; it shows on /healthz instead)."""
    loaded: dict[str, ConnectorFactory] = {}
    broken: dict[str, str] = {}
    for ep in entry_points(group=CONNECTOR_GROUP):
        try:
            loaded[ep.name] = ep.load()
        except Exception as exc:  # ImportError, or any error raised while importing the module
            broken[ep.name] = f"cannot load {ep.value}: {type(exc).__name__}: {exc}"
    return loaded, broken
