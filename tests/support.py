"""Helpers for tests that run the real service: in a thread, or as a separate `adaldyk` process."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from adaldyk_bots.runtime import Runtime, Service
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import unit_of_work, utcnow
from adaldyk_bots.storage.models import ApiToken, OutboxItem
from adaldyk_bots.web.api import token_digest
from adaldyk_bots.workflow import Target, Workflow

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> T:
    """Poll until `check()` returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(interval)


class ServiceThread:
    """The real Service (web + worker) on its own event loop in a background thread."""

    def __init__(
        self, settings: Settings, *, web: bool = True, worker: bool = True, factories: Any = None
    ) -> None:
        self.runtime = Runtime.build(settings, factories=factories)  # factories: a test's own connectors
        self.service = Service(self.runtime, web=web, worker=worker)
        self.settings = settings
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.service.run())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self) -> ServiceThread:
        self._thread.start()
        if self.service.web:
            wait_until(self._listening, timeout=15, what="the web server to listen")
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.settings.host, self.settings.port), timeout=0.2):
                return True
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def __exit__(self, *exc: Any) -> None:
        wait_until(lambda: self.service._loop is not None, timeout=5, what="service loop")
        self.service.stop()
        self._thread.join(timeout=15)
        self.runtime.engine.dispose()
        assert not self._thread.is_alive(), "service did not stop within 15 s"
        if self.error is not None:
            raise self.error


def wait_processed(engine: Any, *, timeout: float = 20.0) -> None:
    """Wait until intake's second step has handled every stored event (none left `received`)."""
    from sqlmodel import Session, func, select

    from adaldyk_bots.storage.models import RawEvent

    def done() -> bool:
        with Session(engine) as s:
            query = select(func.count()).select_from(RawEvent).where(RawEvent.state == "received")
            return s.exec(query).one() == 0

    wait_until(done, timeout=timeout, what="intake to process every stored event")


def create_api_token(
    settings: Settings,
    name: str = "tests",
    *,
    username: str | None = None,
    role: str = "moderator",
    unit_code: str | None = None,
) -> str:
    """A token acting for `username` (default: a user named like the token), created with `role` and
    `unit_code` if it does not exist yet."""
    from sqlmodel import select

    from adaldyk_bots.accounts import create_user
    from adaldyk_bots.storage.db import make_engine
    from adaldyk_bots.storage.models import StaffUser

    token = f"adk_test_{name}_0123456789abcdef"
    engine = make_engine(settings.database_url)
    with unit_of_work(engine) as s:
        username = username or f"{name}-user"
        user = s.exec(select(StaffUser).where(StaffUser.username == username)).first()
        if user is None:
            user = create_user(
                s,
                username=username,
                role=role,
                unit_code=unit_code,
                password="test-password-123",
                now=utcnow(),
            )
        s.add(ApiToken(name=name, token_sha256=token_digest(token), created_at=utcnow(), user_id=user.id))
    engine.dispose()
    return token


def adaldyk_process(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `adaldyk <command>` as a real separate process with the given ADALDYK_* settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ADALDYK_")}
    full_env.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "adaldyk_bots", *command],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def enqueue_replies(engine: Any, items: list[tuple[str, int, str]], *, channel: str, account: str) -> None:
    """Owe (key, chat id, text) replies through the workflow's own enqueue, in one transaction."""
    with unit_of_work(engine) as s:
        for key, chat_id, text in items:
            Workflow.enqueue(
                s,
                key=key,
                target=Target(channel, account, str(chat_id)),
                purpose="reply",
                appeal_id=None,
                text=text,
                now=utcnow(),
            )


def outbox_rows(engine: Any) -> dict[str, OutboxItem]:
    """Every outbox row by its key."""
    from sqlmodel import Session, select

    with Session(engine) as s:
        return {r.key: r for r in s.exec(select(OutboxItem))}


def literal_arguments(functions: set[str], keyword: str) -> dict[str, str]:
    """The string literals the code passes as `keyword=` to calls of any of `functions` (by the called
    name, `f(...)` or `x.f(...)`), each with its first place: read from the source of adaldyk_bots and
    connectors, so that a value added by a later issue is found without listing it here."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found: dict[str, str] = {}
    for path in sorted([*(root / "adaldyk_bots").rglob("*.py"), *(root / "connectors").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            for given in node.keywords if called in functions else ():
                if given.arg == keyword and isinstance(given.value, ast.Constant):
                    found.setdefault(str(given.value.value), f"{path.relative_to(root)}:{node.lineno}")
    return found


# The acknowledgement of a channel's message (config/templates/<lang>.toml `ack`): a signal is received, not
# registered (R13 and the note on social networks), so it claims no registration and no legal term.
ACK_OPENING = {
    "kk": "Хабарламаңыз қабылданды, нөмірі:",
    "ru": "Ваше сообщение получено, номер",
    "en": "Your message has been received under number",
}
_REGISTERED = {
    "kk": ("өтінішіңіз тіркелді", "Жауап беру мерзімі", "жұмыс күні"),
    "ru": ("обращение зарегистрировано", "Срок ответа", "рабочих дней"),
    "en": ("is registered", "has been registered", "Answer due", "working days"),
}


MODERATOR = {"kk": "модераторы", "ru": "модератор", "en": "moderator"}


def assert_signal_ack(
    text: str, language: str, *, number: str | None = None, follow: str = "/status"
) -> None:
    """`text` is the acknowledgement of a signal in `language`: received under its number, a moderator
    to review it, how to follow it (`follow`: the /status command in a chat); no word of registration,
    no due date or term."""
    assert text.startswith(ACK_OPENING[language]), text
    if number is not None:
        assert f"{ACK_OPENING[language]} {number}" in text, text
    assert MODERATOR[language] in text and follow in text, text
    for claim in _REGISTERED[language]:
        assert claim not in text, (claim, text)
    assert not re.search(r"\d{2}\.\d{2}\.\d{4}", text), f"a date in the acknowledgement: {text}"
