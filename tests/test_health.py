"""/healthz on the embedded default: the service runs with every channel off, and says so."""

from __future__ import annotations

import httpx

from tests.support import ServiceThread, free_port


def test_health_reports_database_and_channels_without_credentials(make_settings):
    with ServiceThread(make_settings(port=free_port())) as svc:
        answer = httpx.get(f"{svc.url}/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok" and body["database"]["state"] == "ok"
    assert body["channels"]["telegram"] == {"state": "off", "detail": "no credentials configured"}
    assert body["channels"]["vk"]["state"] == "off"
