"""The channel parsers are total: any bytes become a RawEvent that can be stored, and nothing raises.

Property tests (hypothesis, fixed seed, bounded examples) over random bytes, random JSON documents and
hostile bodies found by hand (a 5000-digit update_id or chat.id, 100,000-deep nesting, NaN, lone
surrogates, NUL), plus the exact reasons for the cases the issue names.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from adaldyk_bots.domain import InboundMessage, Quarantined
from adaldyk_bots.ports import RawEvent
from adaldyk_bots.safejson import NotJson, loads
from connectors.jsonfields import body_key
from connectors.telegram.parser import parse_update_payload
from connectors.vk.parser import parse_event_payload

ACCOUNT = "123456789"
GROUP = "227000001"
BOUNDED = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

TELEGRAM = {
    "update_id": 1,
    "message": {
        "message_id": 5,
        "from": {"id": 3001, "is_bot": False, "first_name": "Дана"},
        "chat": {"id": 3001, "type": "private"},
        "date": 1795760000,
        "text": "Өзен ластанған",
    },
}
VK = {
    "type": "message_new",
    "group_id": int(GROUP),
    "event_id": "0123456789abcdef0123456789abcdef01234567",
    "object": {
        "message": {
            "peer_id": 501,
            "from_id": 501,
            "conversation_message_id": 7,
            "date": 1795760000,
            "text": "Жалоба",
        }
    },
}

PARSERS = {
    "telegram": lambda body: parse_update_payload(body, account=ACCOUNT),
    "vk": lambda body: parse_event_payload(body, account=GROUP),
}

# JSON documents of any shape, with the strings and numbers that broke things: control characters,
# lone surrogates, integers past int64 and past Python's 4300-digit limit.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec=None), max_size=40)
)
_json = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    ["update_id", "message", "chat", "id", "text", "type", "object", "event_id", "secret"]
)


def _assert_storable(event: RawEvent, body: bytes) -> None:
    assert isinstance(event, RawEvent)
    assert event.payload == body  # the exact bytes, whatever they were
    assert isinstance(event.dedup_key, str) and 0 < len(event.dedup_key) <= 200
    assert event.dedup_key.isprintable()
    assert event.outcomes, "every event says what became of it"


@pytest.mark.parametrize("channel", sorted(PARSERS))
@seed(20261201)
@BOUNDED
@given(body=st.binary(max_size=300))
def test_random_bytes(channel: str, body: bytes) -> None:
    _assert_storable(PARSERS[channel](body), body)


@pytest.mark.parametrize("channel", sorted(PARSERS))
@seed(20261201)
@BOUNDED
@given(doc=_json)
def test_random_json_documents(channel: str, doc: Any) -> None:
    body = json.dumps(doc).encode()
    _assert_storable(PARSERS[channel](body), body)


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """The real update/event with one field anywhere replaced by anything."""
    return st.tuples(st.sampled_from(["telegram", "vk"]), st.lists(_keys, min_size=1, max_size=3), _json).map(
        lambda t: {"channel": t[0], "path": t[1], "value": t[2]}
    )


@seed(20261201)
@BOUNDED
@given(change=_mutations())
def test_real_bodies_with_one_field_replaced(change: dict[str, Any]) -> None:
    doc: Any = json.loads(json.dumps(TELEGRAM if change["channel"] == "telegram" else VK))
    node = doc
    for key in change["path"][:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[change["path"][-1]] = change["value"]
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    _assert_storable(PARSERS[change["channel"]](body), body)


HOSTILE = {
    "deep_array": b"[" * 100_000 + b"]" * 100_000,
    "deep_object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep_inside_update": b'{"update_id": 1, "message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "huge_update_id": b'{"update_id": ' + b"7" * 5000 + b', "message": {}}',
    "huge_chat_id": json.dumps(TELEGRAM)
    .replace('"id": 3001, "type"', '"id": ' + "9" * 5000 + ', "type"')
    .encode(),
    "int64_plus_one": json.dumps({**TELEGRAM, "update_id": 2**63}).encode(),
    "nan": b'{"update_id": NaN}',
    "infinity": b'{"update_id": 1, "message": {"x": -Infinity}}',
    "1e400": b'{"update_id": 1, "x": 1e400}',
    "lone_surrogate_key": b'{"event_id": "\\ud800", "type": "\\udfff"}',
    "nul_everywhere": b'{"update_id": 1, "event_id": "a\\u0000b", "type": "\\u0000"}',
    "not_utf8": b"\xff\xfe{\x00",
    "bom": b"\xef\xbb\xbf{}",
    "empty": b"",
    "huge_string_event_id": json.dumps({"event_id": "e" * 100_000, "type": "message_new"}).encode(),
    "huge_vk_group_id": b'{"type": "message_new", "group_id": ' + b"1" * 5000 + b"}",
    "huge_vk_coordinates": json.dumps(
        {
            **VK,
            "object": {
                "message": {
                    **VK["object"]["message"],
                    "geo": {"coordinates": {"latitude": "nan", "longitude": "1e999"}},
                }
            },
        }
    ).encode(),
}


@pytest.mark.parametrize("channel", sorted(PARSERS))
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bodies(channel: str, name: str) -> None:
    body = HOSTILE[name]
    event = PARSERS[channel](body)
    _assert_storable(event, body)


def test_the_measured_cases_are_quarantined_with_a_reason_and_a_body_key() -> None:
    deep = parse_event_payload(HOSTILE["deep_object"], account=GROUP)
    assert deep.outcomes == [Quarantined("vk.invalid_json: nesting too deep")]
    assert deep.dedup_key == body_key(HOSTILE["deep_object"])

    huge = parse_update_payload(HOSTILE["huge_update_id"], account=ACCOUNT)
    assert huge.outcomes == [Quarantined("telegram.invalid_json: integer longer than 4300 digits")]
    assert huge.dedup_key.startswith("sha256:")

    chat = parse_update_payload(HOSTILE["huge_chat_id"], account=ACCOUNT)
    assert chat.outcomes == [Quarantined("telegram.invalid_json: integer longer than 4300 digits")]

    big = parse_update_payload(HOSTILE["int64_plus_one"], account=ACCOUNT)
    assert big.outcomes == [Quarantined("telegram.bad_field: update_id (integer out of range)")]

    coordinates = parse_event_payload(HOSTILE["huge_vk_coordinates"], account=GROUP)
    assert coordinates.outcomes == [
        Quarantined("vk.bad_field: object.message.geo.coordinates.latitude (expected number, got string)")
    ]

    odd = parse_event_payload(HOSTILE["nul_everywhere"], account=GROUP)
    assert odd.dedup_key.startswith("event:sha256:")  # hashed, never cleaned or cut


def test_nul_in_a_citizens_text_is_parsed_as_sent() -> None:
    # The parser keeps the text exactly; only the database copy replaces NUL (storage/types.py).
    doc = json.loads(json.dumps(TELEGRAM))
    doc["message"]["text"] = "су\x00лас"
    event = parse_update_payload(json.dumps(doc).encode(), account=ACCOUNT)
    (outcome,) = event.outcomes
    assert isinstance(outcome, InboundMessage) and outcome.text == "су\x00лас"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000, "invalid_json: nesting too deep"),
        (b"9" * 5000, "invalid_json: integer longer than 4300 digits"),
        (b"NaN", "invalid_json: NaN is not JSON"),
        (b"1e400", "invalid_json: number 1e400 is out of range"),
        (b"\xff", "invalid_utf8: invalid start byte at byte 0"),
        (b"{", "invalid_json: Expecting property name enclosed in double quotes at line 1 column 2"),
    ],
)
def test_safe_loads_raises_only_not_json(body: bytes, reason: str) -> None:
    with pytest.raises(NotJson) as caught:
        loads(body)
    assert caught.value.reason == reason


@seed(20261201)
@BOUNDED
@given(body=st.binary(max_size=200) | _json.map(lambda d: json.dumps(d).encode()))
def test_safe_loads_is_total(body: bytes) -> None:
    try:
        loads(body)
    except NotJson:
        pass
