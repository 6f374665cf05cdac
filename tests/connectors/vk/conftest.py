"""The fake VK platform for the VK tests (one community, started fresh for each test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.vk.fake import FakeVK
from tests.connectors.vk import GROUP_ID, TOKEN


@pytest.fixture
def fake_vk() -> Iterator[FakeVK]:
    server = FakeVK()
    server.start()
    server.add_group(GROUP_ID, TOKEN)
    try:
        yield server
    finally:
        server.stop()
