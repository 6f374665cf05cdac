"""`adaldyk sandbox`: fake platforms on loopback, simulated citizens and a simulated moderator, and the
real service between them, so a newcomer can watch the whole flow on one machine without any token.

Every channel brings its own sandbox (its fake platform and its citizens), found through the entry-point
group `adaldyk.sandboxes` like the connectors themselves: the core never names a channel. A sandbox is
a `ChannelSandbox`; its entry point is a callable `(*, citizens: int) -> ChannelSandbox`.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from sqlalchemy import Engine

from adaldyk_bots.accounts import create_user
from adaldyk_bots.registry import load_entry_points
from adaldyk_bots.runtime import Runtime, Service
from adaldyk_bots.sandbox_moderator import WorkspaceModerator
from adaldyk_bots.settings import Settings, SettingsError, load_settings
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.models import ApiToken
from adaldyk_bots.storage.schema import ensure_schema
from adaldyk_bots.web.api import token_digest

__all__ = [
    "SANDBOX_GROUP",
    "ChannelSandbox",
    "Citizen",
    "CitizenScript",
    "SandboxLine",
    "ScriptedSandbox",
    "WebhookSandbox",
    "load_sandboxes",
    "run_sandbox",
]

SANDBOX_GROUP = "adaldyk.sandboxes"
SANDBOX_DB = Path("var/sandbox.sqlite3")
# Seconds between two messages of one channel's citizens: slow enough to read along.
WRITE_PAUSE = (1.0, 2.5)
# Seconds between two looks of the simulated moderator at the inbox.
MODERATOR_PAUSE = 1.0
SANDBOX_USER = "sandbox"
SANDBOX_ADMIN = "sandbox-admin"
SIM_MODERATOR = "aigerim"


@dataclass(frozen=True)
class Citizen:
    """A simulated citizen: a name, the language they write in, and what they write, in order."""

    name: str
    language: str  # kk | ru
    texts: tuple[str, ...]


@dataclass(frozen=True)
class SandboxLine:
    """One message on a fake platform, for the printed conversation."""

    citizen: str
    language: str
    text: str
    from_bot: bool  # True: the service wrote to the citizen


class ChannelSandbox(Protocol):
    """A channel's fake platform with its simulated citizens (connectors/<channel>/sandbox.py)."""

    def start(self) -> dict[str, Any]:
        """Start the fake platform; return the settings (the `Settings` keywords, e.g. `telegram_token`,
        `telegram_api_url`) that point the service at it."""
        ...

    def citizen_writes(self) -> SandboxLine | None:
        """The next citizen writes their next message on the platform; None when all have written."""
        ...

    def answers(self) -> list[SandboxLine]:
        """What the service sent to the citizens on the platform since the last call."""
        ...

    def stop(self) -> None: ...


SandboxFactory = Callable[..., ChannelSandbox]


@runtime_checkable
class WebhookSandbox(Protocol):
    """A sandbox whose fake platform pushes webhooks (Meta): told where the service listens, once its
    settings are built (the fake retries until the web server answers)."""

    def connect(self, service_url: str) -> None: ...


class CitizenScript:
    """Who writes what next: every citizen's first message first (so each opens an appeal early), then
    the follow-ups in a shuffled order, as people write."""

    def __init__(self, citizens: Sequence[Citizen], *, rng: random.Random | None = None) -> None:
        self.citizens = list(citizens)
        firsts = [(c, c.texts[0]) for c in self.citizens if c.texts]
        later = [(c, text) for c in self.citizens for text in c.texts[1:]]
        (rng or random.Random()).shuffle(later)
        self._queue = firsts + later

    def next(self) -> tuple[Citizen, str] | None:
        return self._queue.pop(0) if self._queue else None


class ScriptedSandbox:
    """What every channel's sandbox shares: its citizens at platform addresses (chat or user ids) from
    `first_address` on, a script of who writes next, and the platform's record of what the bot sent,
    each shown once. A channel adds `start`/`stop` and the two platform calls `_write` and `_sent`."""

    def __init__(self, citizens: Sequence[Citizen], *, first_address: int) -> None:
        self.script = CitizenScript(citizens)
        self.citizen_at = {first_address + i: c for i, c in enumerate(self.script.citizens)}
        self._address_of = {c.name: address for address, c in self.citizen_at.items()}
        self._shown = 0

    def citizen_writes(self) -> SandboxLine | None:
        step = self.script.next()
        if step is None:
            return None
        citizen, text = step
        self._write(self._address_of[citizen.name], citizen, text)
        return SandboxLine(citizen.name, citizen.language, text, from_bot=False)

    def answers(self) -> list[SandboxLine]:
        sent = self._sent()
        new, self._shown = sent[self._shown :], len(sent)
        return [
            SandboxLine(citizen.name, citizen.language, text, from_bot=True)
            for address, text in new
            if (citizen := self.citizen_at.get(address)) is not None
        ]

    def _write(self, address: int, citizen: Citizen, text: str) -> None:
        """The citizen at `address` sends `text` on the fake platform."""
        raise NotImplementedError

    def _sent(self) -> list[tuple[int, str]]:
        """(address, text) of every message the service sent on the fake platform, oldest first."""
        raise NotImplementedError


def load_sandboxes() -> tuple[dict[str, SandboxFactory], dict[str, str]]:
    """The installed channels' sandboxes, and the ones that failed to load with the reason."""
    loaded, broken = load_entry_points(SANDBOX_GROUP)
    return {name: cast("SandboxFactory", obj) for name, obj in loaded.items()}, broken


def run_sandbox(
    settings: Settings, *, citizens: int, duration: float, channels: Sequence[str] | None = None
) -> int:
    """Run every chosen channel's sandbox (all installed ones by default) against one real service."""
    factories, broken = load_sandboxes()
    for name, reason in sorted(broken.items()):
        _say(f"sandbox for {name} is unavailable: {reason}")
    chosen = list(channels) if channels else sorted(factories)
    unknown = [name for name in chosen if name not in factories]
    if unknown or not chosen:
        known = ", ".join(sorted(factories)) or "none"
        _say(f"adaldyk sandbox: no sandbox for {', '.join(unknown) or 'any channel'} (installed: {known})")
        return 2
    sandboxes = {name: factories[name](citizens=citizens) for name in chosen}
    started: list[ChannelSandbox] = []
    try:
        overrides: dict[str, Any] = {}
        for sandbox in sandboxes.values():
            overrides.update(sandbox.start())
            started.append(sandbox)
        return _run(settings, sandboxes, overrides, duration=duration)
    finally:
        for sandbox in reversed(started):
            sandbox.stop()


def _run(
    settings: Settings, sandboxes: dict[str, ChannelSandbox], overrides: dict[str, Any], *, duration: float
) -> int:
    SANDBOX_DB.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{SANDBOX_DB}{suffix}").unlink(missing_ok=True)
    try:
        # Built again from the keywords (as the environment would give them), so each channel's own
        # validation runs on what its sandbox returned.
        sandbox_settings = load_settings(
            host=settings.host,
            port=settings.port,
            config_dir=settings.config_dir,
            log_level=settings.log_level,
            database_url=f"sqlite:///{SANDBOX_DB}",
            **overrides,
        )
    except SettingsError as exc:
        _say(f"adaldyk sandbox: configuration error: {exc}")
        return 2
    engine = make_engine(sandbox_settings.database_url)
    try:
        ensure_schema(engine, auto_migrate=True)
        # Only the sandboxed channels: real credentials in .env for another channel are never used here.
        runtime = Runtime.build(sandbox_settings, engine=engine, channels=set(sandboxes))
        logins = _sandbox_users(engine)
        base = f"http://{settings.host}:{settings.port}"
        for sandbox in sandboxes.values():
            if isinstance(sandbox, WebhookSandbox):
                sandbox.connect(base)
        _say(f"Sandbox: {', '.join(sandboxes)} on loopback, database {SANDBOX_DB}")
        _say(f"Workspace: {base}/login")
        _say(f"  user {logins.you}, password {logins.your_password}  (moderator: the inbox, appeals)")
        _say(f"  user {logins.admin}, password {logins.admin_password}  (admin: also {base}/admin/health)")
        _say(f"Workspace API: {base}/api/v1/appeals  (Authorization: Bearer {logins.your_token})")
        _say(f"Health: {base}/healthz   OpenAPI: {base}/docs")
        _say(f"The simulated moderator {SIM_MODERATOR} works in the same workspace: watch the inbox.\n")
        moderator = WorkspaceModerator(
            _local_url(settings.host, settings.port),
            SIM_MODERATOR,
            logins.sim_password,
            logins.sim_token,
            say=_say,
        )
        try:
            asyncio.run(_play(runtime, sandboxes, moderator, duration=duration))
        except KeyboardInterrupt:
            pass
        finally:
            moderator.close()
    finally:
        engine.dispose()
    return 0


async def _play(
    runtime: Runtime, sandboxes: dict[str, ChannelSandbox], moderator: WorkspaceModerator, *, duration: float
) -> None:
    service = Service(runtime, web=True, worker=True)
    served = asyncio.create_task(service.run())
    rng = random.Random()
    started = time.monotonic()
    next_write = dict.fromkeys(sandboxes, 0.0)
    next_look = 0.0
    try:
        while not served.done() and (duration <= 0 or time.monotonic() - started < duration):
            now = time.monotonic() - started
            for channel, sandbox in sandboxes.items():
                if now >= next_write[channel]:
                    line = sandbox.citizen_writes()
                    if line is not None:
                        _show(channel, line)
                    next_write[channel] = now + rng.uniform(*WRITE_PAUSE)
                for line in sandbox.answers():
                    _show(channel, line)
            if now >= next_look:
                # Over HTTP, as a person at the workspace: off the loop that serves the workspace.
                await asyncio.to_thread(moderator.round)
                next_look = now + MODERATOR_PAUSE
            await asyncio.sleep(0.2)
    finally:
        service.stop()
        await served


def _show(channel: str, line: SandboxLine) -> None:
    text = line.text.replace("\n", "\n      ")
    if line.from_bot:
        _say(f"🤖 [{channel}] бот → {line.citizen}: {text}")
    else:
        _say(f"👤 [{channel}] {line.citizen} ({line.language}) → бот: {text}")


@dataclass(frozen=True)
class _Logins:
    you: str
    your_password: str
    your_token: str
    admin: str
    admin_password: str
    sim_password: str
    sim_token: str


def _sandbox_users(engine: Engine) -> _Logins:
    """A fresh database each run: a moderator and an admin for the newcomer (printed), and the simulated
    moderator's own account, so the appeal history tells its actions from the newcomer's."""
    made = {name: secrets.token_urlsafe(12) for name in (SANDBOX_USER, SANDBOX_ADMIN, SIM_MODERATOR)}
    tokens = {name: "adk_sandbox_" + secrets.token_urlsafe(16) for name in (SANDBOX_USER, SIM_MODERATOR)}
    roles = {SANDBOX_USER: "moderator", SANDBOX_ADMIN: "admin", SIM_MODERATOR: "moderator"}
    names = {SIM_MODERATOR: "Айгерим (симуляция)"}
    with unit_of_work(engine) as s:
        for username, password in made.items():
            user = create_user(
                s,
                username=username,
                role=roles[username],
                full_name=names.get(username, ""),
                password=password,
                now=utcnow(),
            )
            if username in tokens:
                s.add(
                    ApiToken(
                        name=username,
                        token_sha256=token_digest(tokens[username]),
                        created_at=utcnow(),
                        user_id=user.id,
                    )
                )
    return _Logins(
        you=SANDBOX_USER,
        your_password=made[SANDBOX_USER],
        your_token=tokens[SANDBOX_USER],
        admin=SANDBOX_ADMIN,
        admin_password=made[SANDBOX_ADMIN],
        sim_password=made[SIM_MODERATOR],
        sim_token=tokens[SIM_MODERATOR],
    )


def _local_url(host: str, port: int) -> str:
    # A server bound to every address is reached on loopback; the sandbox never leaves the machine.
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"  # noqa: S104


def _say(line: str) -> None:
    print(line, flush=True, file=sys.stdout)
