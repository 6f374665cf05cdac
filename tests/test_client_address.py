"""The client's address for throttling and session records: the TCP peer, unless ADALDYK_TRUSTED_PROXIES
names the peer, then the right-most X-Forwarded-For entry that is not a trusted proxy."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from adaldyk_bots.settings import SettingsError, load_settings, parse_networks
from adaldyk_bots.web.deps import client_address, safe_next


def _request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 5000)})


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        ("", "203.0.113.5", ("198.51.100.1",), "203.0.113.5"),  # no proxies: the header is ignored
        ("10.0.0.1", "203.0.113.5", ("198.51.100.1",), "203.0.113.5"),  # peer is not the proxy
        ("10.0.0.1", "10.0.0.1", ("198.51.100.1",), "198.51.100.1"),
        # The client wrote its own X-Forwarded-For; the proxy appended the real peer: the right-most wins.
        ("10.0.0.1", "10.0.0.1", ("6.6.6.6, 198.51.100.1",), "198.51.100.1"),
        # Two proxies in a chain (CIDR), and the header split over two lines.
        ("10.0.0.0/8", "10.0.0.2", ("1.1.1.1, 198.51.100.1", "10.0.0.9"), "198.51.100.1"),
        ("10.0.0.0/8, ::1", "::1", ("2001:db8::7",), "2001:db8::7"),
        ("10.0.0.1", "10.0.0.1", (), "10.0.0.1"),  # the proxy sent nothing: the proxy itself
        ("10.0.0.1", "10.0.0.1", ("not-an-ip",), "10.0.0.1"),  # garbage is never an address
        ("10.0.0.1", "10.0.0.1", ("10.0.0.1",), "10.0.0.1"),
    ],
)
def test_client_address(
    trusted: str, peer: str, forwarded: tuple[str, ...], expected: str, make_settings: Any
) -> None:
    settings = make_settings(trusted_proxies=trusted)
    assert client_address(_request(peer, *forwarded), settings) == expected


def test_trusted_proxies_are_validated() -> None:
    assert [str(n) for n in parse_networks(" 10.0.0.1 ,192.168.0.0/16,, ::1")] == [
        "10.0.0.1/32",
        "192.168.0.0/16",
        "::1/128",
    ]
    with pytest.raises(SettingsError, match="ADALDYK_TRUSTED_PROXIES: 'proxy.local' is not an IP address"):
        load_settings(_env_file=None, trusted_proxies="10.0.0.1, proxy.local")
    with pytest.raises(SettingsError, match="ADALDYK_SESSION_IDLE_HOURS"):
        load_settings(_env_file=None, session_idle_hours=0)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "/"),
        ("/appeals/ADL-1?x=1", "/appeals/ADL-1?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("appeals", "/"),
    ],
)
def test_safe_next(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected
