"""A burst of page loads queues and is answered; it never stalls on the database pool (web/admission.py).

Before the admission limit, 200 simultaneous requests of logged-in users had every worker thread waiting
for a pooled connection while the requests holding the connections waited for a thread: 503s after the
pool's 30 s timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.web_support import WebApp, create_user, login, seed_appeal

BURST = 200


def test_a_burst_of_page_loads_is_answered_without_503(make_settings: Any) -> None:
    with WebApp(make_settings()) as web:
        create_user(web.runtime.engine, "moder", "moderator")
        seed_appeal(web.runtime, text="Өзен ластанды, шара қолданыңыздар")
        login(web.client, "moder")
        cookies = dict(web.client.cookies)

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=BURST)
            async with httpx.AsyncClient(base_url=web.url, cookies=cookies, limits=limits, timeout=120) as c:
                answers = await asyncio.gather(*(c.get("/inbox/results") for _ in range(BURST)))
            return [a.status_code for a in answers]

        statuses = asyncio.run(burst())
    assert statuses == [200] * BURST, sorted(set(statuses))
