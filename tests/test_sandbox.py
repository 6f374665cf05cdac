"""`adaldyk sandbox` shows the whole flow on one machine without any token, on every installed channel."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from adaldyk_bots.sandbox import load_sandboxes
from tests.support import ACK_OPENING, free_port

# A channel's message is a signal: the acknowledgement says received (tests/support.py, assert_signal_ack).
KK_ACK = ACK_OPENING["kk"]
RU_ACK = ACK_OPENING["ru"]


def _sandbox(cwd: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADALDYK_")}
    env["ADALDYK_PORT"] = str(free_port())
    return subprocess.run(
        [sys.executable, "-m", "adaldyk_bots", "sandbox", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_channel_brings_its_sandbox_through_the_registry() -> None:
    factories, broken = load_sandboxes()
    assert broken == {}
    assert {"telegram", "vk", "facebook", "instagram", "whatsapp"} <= set(factories)


def test_citizens_of_every_channel_get_answers_in_their_language(tmp_path: Path) -> None:
    result = _sandbox(tmp_path, "--duration", "14", "--citizens", "4")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for channel in ("telegram", "vk", "facebook", "instagram", "whatsapp"):
        wrote = [line for line in out.splitlines() if line.startswith(f"👤 [{channel}]")]
        answered = "\n".join(line for line in out.splitlines() if line.startswith(f"🤖 [{channel}]"))
        assert any("(kk)" in line for line in wrote) and any("(ru)" in line for line in wrote), channel
        assert KK_ACK in answered, f"no Kazakh acknowledgement on {channel}:\n{out}"
        assert RU_ACK in answered, f"no Russian acknowledgement on {channel}:\n{out}"
    assert "модератор" in out and "→ in_progress" in out
    # A login for the newcomer, and the simulated moderator works through the same workspace.
    assert re.search(r"user sandbox, password \S{12,}", out) and "/login" in out
    assert "модератор aigerim вошёл в рабочее место через форму входа" in out
    database = tmp_path / "var" / "sandbox.sqlite3"
    assert database.exists()
    with sqlite3.connect(database) as db:
        sessions = db.execute(
            "SELECT count(*) FROM web_session JOIN staff_user ON staff_user.id = web_session.user_id "
            "WHERE staff_user.username = 'aigerim'"
        ).fetchone()[0]
        replies = [row[0] for row in db.execute("SELECT actor FROM appeal_event WHERE kind = 'reply'")]
    assert sessions >= 1  # logged in through POST /login
    # Through the workspace's forms (the JSON API would add "(token:…)" to the actor).
    assert "reply — через рабочее место" in out and "status — через рабочее место" in out
    assert replies and set(replies) == {"user:aigerim"}, replies


def test_channels_option_chooses_and_refuses_unknown_ones(tmp_path: Path) -> None:
    result = _sandbox(tmp_path, "--channels", "telegram,nosuch", "--duration", "1", timeout=30)
    assert result.returncode == 2
    assert "no sandbox for nosuch" in result.stdout and "telegram" in result.stdout
