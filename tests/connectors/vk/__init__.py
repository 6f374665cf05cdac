"""Shared pieces of the VK tests: the community under test, settings for the fake, readiness waits."""

from __future__ import annotations

from typing import Any

from connectors.vk.fake import FakeVK

GROUP_ID = 227_000_001
TOKEN = "vk1.a.fake-community-token-for-tests-only_0123456789"
SECRET = "callback-secret_0123456789"
CONFIRMATION = "5d7a1f3c"


def vk_settings(make_settings: Any, fake: FakeVK, **overrides: Any) -> Any:
    """Settings for the real service against the fake: long poll unless told otherwise, fast loops."""
    values: dict[str, Any] = {
        "vk_token": TOKEN,
        "vk_group_id": GROUP_ID,
        "vk_api_url": fake.url,
        "vk_longpoll_wait": 1,
        "dispatch_interval_seconds": 0.1,
    }
    values.update(overrides)
    return make_settings(**values)


def wait_for_long_poll(svc: Any) -> None:
    """The poller took VK's position (a first start begins at "now", like a bot added to a community):
    only events after this are the service's to see."""
    from tests.support import wait_until

    wait_until(lambda: svc.runtime.intake.cursor("vk", str(GROUP_ID)), what="the long-poll session")
