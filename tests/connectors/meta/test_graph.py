"""The Graph client (facebook-sdk wrapped) against the fake Graph API over loopback: the version in the
path, routing to the configured base, nested parameters as JSON strings, typed errors with HTTP status."""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors.meta.fake import FakeGraph
from connectors.meta.graph import GraphClient, GraphError, split_graph_url
from tests.connectors.meta import PAGE_ID, PAGE_TOKEN


def test_the_version_comes_from_the_url() -> None:
    assert split_graph_url("https://graph.facebook.com/v23.0") == ("https://graph.facebook.com", "v23.0")
    assert split_graph_url("http://127.0.0.1:9/proxy/v9.0/") == ("http://127.0.0.1:9/proxy", "v9.0")
    with pytest.raises(ValueError):
        split_graph_url("https://graph.facebook.com")


def test_calls_reach_the_configured_base_with_the_version_in_the_path(fake_graph: FakeGraph) -> None:
    client = GraphClient(api_url=fake_graph.api_url, timeout=5)
    me = asyncio.run(client.get("me", {"fields": "id,name"}, token=PAGE_TOKEN))
    assert me["id"] == PAGE_ID
    assert fake_graph.calls[-1] == {"method": "GET", "path": "me", "params": {"fields": "id,name"}}
    # A two-digit version the library's own check would refuse goes in the path as given.
    wrong = GraphClient(api_url=f"{fake_graph.url}/v99.0", timeout=5)
    with pytest.raises(GraphError) as caught:
        asyncio.run(wrong.get("me", token=PAGE_TOKEN))
    assert caught.value.code == 2635


def test_nested_parameters_go_as_json_strings(fake_graph: FakeGraph) -> None:
    fake_graph.citizen_message(PAGE_ID, "7001", "Сәлем", deliver=False)
    client = GraphClient(api_url=fake_graph.api_url, timeout=5)
    answer = asyncio.run(
        client.post(
            f"{PAGE_ID}/messages",
            {"recipient": {"id": "7001"}, "messaging_type": "RESPONSE", "message": {"text": "Жауап"}},
            token=PAGE_TOKEN,
        )
    )
    assert answer["recipient_id"] == "7001" and answer["message_id"].startswith("m_")
    sent = fake_graph.calls[-1]["params"]
    assert json.loads(sent["recipient"]) == {"id": "7001"}
    assert json.loads(sent["message"]) == {"text": "Жауап"}
    assert "access_token" not in sent  # the fake strips it; it travelled in the form body


def test_errors_are_typed_with_code_subcode_trace_and_status(fake_graph: FakeGraph) -> None:
    client = GraphClient(api_url=fake_graph.api_url, timeout=5)
    with pytest.raises(GraphError) as caught:
        asyncio.run(client.get("me", token="not-a-token"))
    assert (caught.value.code, caught.value.http_status, caught.value.type) == (190, 400, "OAuthException")
    assert caught.value.fbtrace_id

    fake_graph.fail_next(2, http_status=500)
    with pytest.raises(GraphError) as caught:
        asyncio.run(client.get("me", token=PAGE_TOKEN))
    assert (caught.value.code, caught.value.http_status) == (2, 500)

    fake_graph.citizen_message(PAGE_ID, "7002", "hello", at=0.0, deliver=False)  # an old message
    with pytest.raises(GraphError) as caught:
        asyncio.run(
            client.post(
                f"{PAGE_ID}/messages",
                {"recipient": {"id": "7002"}, "messaging_type": "RESPONSE", "message": {"text": "x"}},
                token=PAGE_TOKEN,
            )
        )
    assert (caught.value.code, caught.value.subcode) == (10, 2018278)


def test_transport_failures_have_negative_codes(fake_graph: FakeGraph) -> None:
    fake_graph.citizen_message(PAGE_ID, "7003", "hello", deliver=False)
    fake_graph.lose_answer_next()
    client = GraphClient(api_url=fake_graph.api_url, timeout=0.3)
    with pytest.raises(GraphError) as caught:
        asyncio.run(
            client.post(
                f"{PAGE_ID}/messages",
                {"recipient": {"id": "7003"}, "message": {"text": "x"}},
                token=PAGE_TOKEN,
            )
        )
    assert caught.value.code == GraphError.TIMEOUT
    port = fake_graph.port
    fake_graph.stop()
    closed = GraphClient(api_url=f"http://127.0.0.1:{port}/v23.0", timeout=2)
    with pytest.raises(GraphError) as caught:
        asyncio.run(closed.get("me", token=PAGE_TOKEN))
    assert caught.value.code == GraphError.NETWORK
    fake_graph.start()
