"""`adaldyk sandbox` shows the whole flow on one machine without any token."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import free_port


def test_sandbox_citizens_get_answers_in_their_language(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADALDYK_")}
    env["ADALDYK_PORT"] = str(free_port())
    result = subprocess.run(
        [sys.executable, "-m", "adaldyk_bots", "sandbox", "--duration", "12", "--citizens", "4"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Сіздің өтінішіңіз тіркелді" in out  # Kazakh acknowledgement
    assert "Ваше обращение зарегистрировано" in out  # Russian acknowledgement
    assert "модератор" in out and "→ in_progress" in out
    assert (tmp_path / "var" / "sandbox.sqlite3").exists()
