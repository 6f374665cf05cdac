"""Shared fixtures: a real database per test (SQLite file, or PostgreSQL when ADALDYK_TEST_DATABASE_URL is
set), the fake Telegram platform, and a guard that fails any attempt to leave loopback."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import make_engine
from adaldyk_bots.storage.migrate import upgrade
from adaldyk_bots.storage.scratch import ScratchDatabase, truncate_all
from connectors.telegram.fake import FakeTelegramServer

# Playwright with Debian's Chromium: the `browser` and `page` fixtures.
pytest_plugins = ["tests.browser"]

PG_URL = os.environ.get("ADALDYK_TEST_DATABASE_URL")
# Shared rate budgets: CI's PostgreSQL run sets it (then Redis must answer); without it, tests that need
# Redis use this machine's on database 15 when it answers, and are skipped when it does not.
REDIS_URL = os.environ.get("ADALDYK_TEST_REDIS_URL")
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/15"
TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
BOT_ID = TOKEN.split(":")[0]


# --- no traffic beyond loopback --------------------------------------------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX socket path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise RuntimeError(f"test tried to reach {address!r}: tests talk to loopback only")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise RuntimeError(f"test tried to reach {address!r}: tests talk to loopback only")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    for name in list(os.environ):  # the developer's own settings must not leak into a test
        if name.startswith("ADALDYK_") and not name.startswith("ADALDYK_TEST_"):
            monkeypatch.delenv(name)


# --- databases -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "migrated.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[str | None]:
    if not PG_URL:
        yield None
        return
    try:
        database = ScratchDatabase(PG_URL, prefix="adaldyk_test")
    except Exception as exc:  # CI asked for PostgreSQL: its absence is a failure, never a skip
        pytest.fail(f"ADALDYK_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {exc}")
    yield database.url
    database.drop()


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path, _pg_database: str | None) -> str:
    if _pg_database:
        truncate_all(_pg_database)
        return _pg_database
    path = tmp_path / "adaldyk.sqlite3"
    shutil.copy(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> Any:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": database_url, "secret_key": "test-secret-key-0123456789"}
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


# --- the fake platform -----------------------------------------------------------------------------


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegramServer]:
    server = FakeTelegramServer(chat_burst=3, chat_rate_per_s=1.0, bot_burst=30, bot_rate_per_s=30.0)
    server.start()
    server.add_bot(TOKEN)
    try:
        yield server
    finally:
        server.stop()


# --- Redis (shared rate budgets) ---------------------------------------------------------------------


@dataclass(frozen=True)
class RedisForTest:
    url: str
    prefix: str  # unique per test: parallel runs and earlier tests never share a budget


@pytest.fixture
def redis_budget() -> Iterator[RedisForTest]:
    import redis

    url = REDIS_URL or LOCAL_REDIS_URL
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        if REDIS_URL:  # CI asked for Redis: its absence is a failure, never a skip
            pytest.fail(f"ADALDYK_TEST_REDIS_URL is set but Redis is unreachable: {exc}")
        pytest.skip(f"no Redis at {LOCAL_REDIS_URL} (set ADALDYK_TEST_REDIS_URL to require one): {exc}")
    prefix = f"adaldyk-test-{uuid.uuid4().hex[:12]}"
    try:
        yield RedisForTest(url, prefix)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
