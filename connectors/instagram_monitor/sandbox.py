"""The Instagram monitor's part of `adaldyk sandbox`: the fake Instagram web endpoints, a ministry post,
and citizens commenting under it. The service reads the comments every few seconds and opens appeals
whose notices show "answer by hand" (the monitor cannot reply, so nothing is ever sent back here)."""

from __future__ import annotations

import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from adaldyk_bots.sandbox import Citizen, ScriptedSandbox
from connectors.instagram_monitor.fake import FakeInstagram

__all__ = ["InstagramMonitorSandbox"]

SANDBOX_ACCOUNT = "ecology_sandbox"
SANDBOX_LOGIN = "adaldyk_sandbox_reader"
FIRST_USER_ID = 880_000

CITIZENS = (
    Citizen(
        "aruzhan.eco", "kk", ("Алматыда ауа өте ластанған, түтін шығаратын кәсіпорындарды тексеріңіздер!",)
    ),
    Citizen("sergey_k", "ru", ("Под этим постом скажу: на Капчагае опять сливают отходы в воду.",)),
    Citizen("dana.nur", "kk", ("Балқаш көлінің жағасы қоқысқа толы, тазалау жоспарланған ба?",)),
)


class InstagramMonitorSandbox(ScriptedSandbox):
    """Entry point `instagram_monitor` of the `adaldyk.sandboxes` group."""

    def __init__(self, *, citizens: int) -> None:
        super().__init__(CITIZENS[: max(0, citizens)], first_address=FIRST_USER_ID)
        self.fake = FakeInstagram()
        self._dir = tempfile.TemporaryDirectory(prefix="adaldyk-instaloader-")
        self._post = ""

    def start(self) -> dict[str, Any]:
        self.fake.start()
        self.fake.set_account(SANDBOX_ACCOUNT)
        self._post = self.fake.add_post(
            "Таза табиғат — ортақ міндет. Экологиялық мәселелер туралы пікір жазыңыздар.",
            taken_at=int(time.time()) - 3600,
        )
        session = Path(self._dir.name) / f"session-{SANDBOX_LOGIN}"
        session.write_bytes(pickle.dumps(self.fake.session_cookies(SANDBOX_LOGIN)))
        return {
            "instaloader_account": SANDBOX_ACCOUNT,
            "instaloader_session_file": str(session),
            "instaloader_login": SANDBOX_LOGIN,
            "instaloader_base_url": self.fake.url,
            "instaloader_interval_seconds": 3.0,
        }

    def stop(self) -> None:
        self.fake.stop()
        self._dir.cleanup()

    def _write(self, address: int, citizen: Citizen, text: str) -> None:
        self.fake.add_comment(
            self._post, text, user_id=str(address), username=citizen.name, created_at=int(time.time())
        )

    def _sent(self) -> list[tuple[int, str]]:
        return []  # read-only: every answer is written by hand in Instagram itself
