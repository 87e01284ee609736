"""Property tests: the parsers never fail in an undocumented way.

Whatever arrives on the wire, ``parse_event`` returns an event or raises ``InvalidEventError``,
and ``parse_actions`` returns a list of actions or raises ``InvalidActionError``. Any other
exception (``KeyError``, ``RecursionError``, ``UnicodeDecodeError``, a raw pydantic
``ValidationError`` ...) is a bug.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipgate_ai_flow import (
    AiFlowActionType,
    AiFlowEventType,
    AssistantSpeakEvent,
    AssistantSpeechEndedEvent,
    AudioAction,
    BargeInAction,
    BaseAction,
    BaseEvent,
    ConfigureTranscriptionAction,
    ConfigureVoiceToVoiceAction,
    DtmfReceivedEvent,
    HangupAction,
    InvalidActionError,
    InvalidEventError,
    MixAudioAction,
    SendSmsAction,
    SessionEndEvent,
    SessionStartEvent,
    SmsFailedEvent,
    SpeakAction,
    TransferAction,
    UnknownEvent,
    UserBargeInEvent,
    UserInputTimeoutEvent,
    UserSpeakEvent,
    UserSpeechStartedEvent,
    dump_action,
    dump_event,
    parse_action,
    parse_actions,
    parse_event,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"

EVENT_CLASSES: dict[str, type[BaseEvent]] = {
    "session_start": SessionStartEvent,
    "user_speech_started": UserSpeechStartedEvent,
    "user_speak": UserSpeakEvent,
    "user_barge_in": UserBargeInEvent,
    "dtmf_received": DtmfReceivedEvent,
    "assistant_speak": AssistantSpeakEvent,
    "assistant_speech_ended": AssistantSpeechEndedEvent,
    "user_input_timeout": UserInputTimeoutEvent,
    "sms_failed": SmsFailedEvent,
    "session_end": SessionEndEvent,
}
ACTION_CLASSES: dict[str, type[BaseAction]] = {
    "speak": SpeakAction,
    "audio": AudioAction,
    "mix_audio": MixAudioAction,
    "hangup": HangupAction,
    "transfer": TransferAction,
    "barge_in": BargeInAction,
    "configure_transcription": ConfigureTranscriptionAction,
    "send_sms": SendSmsAction,
    "configure_voice_to_voice": ConfigureVoiceToVoiceAction,
}


def _load_all(kind: str) -> list[dict[str, Any]]:
    payloads = [json.loads(p.read_bytes()) for p in sorted((FIXTURES / kind).glob("*.json"))]
    assert payloads, f"no fixtures in {FIXTURES / kind}"
    return payloads


EVENT_PAYLOADS = _load_all("events")
ACTION_PAYLOADS = _load_all("actions")

PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------------------
# Strategies

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "type", "session", "id", "user_speak", "speak", "0", "true", "null"])
)
_keys = st.text(max_size=12) | st.sampled_from(
    ["type", "session", "session_id", "id", "text", "digit", "barged_in", "duration_ms"]
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=25,
)
"""JSON-ish values: dicts, lists, strings, numbers, booleans and null, nested."""

_type_strings = (
    st.sampled_from([e.value for e in AiFlowEventType])
    | st.sampled_from([a.value for a in AiFlowActionType])
    | st.text(max_size=25)
    | st.sampled_from(["USER_SPEAK", "user_speak ", " session_start", "Session_End", "null"])
)


@st.composite
def mutated_payload(draw: st.DrawFn, payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """A fixture payload with a few random edits: deleted keys, values of the wrong type,
    extra keys, a different ``type`` and garbage in ``session``."""
    payload: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(payloads))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        edit = draw(
            st.sampled_from(
                ["delete", "replace", "add", "type", "session", "session_key", "session_del"]
            )
        )
        if edit == "delete" and payload:
            del payload[draw(st.sampled_from(sorted(payload)))]
        elif edit == "replace" and payload:
            payload[draw(st.sampled_from(sorted(payload)))] = draw(json_values)
        elif edit == "add":
            payload[draw(_keys)] = draw(json_values)
        elif edit == "type":
            payload["type"] = draw(_type_strings | json_values)
        elif edit == "session":
            payload["session"] = draw(json_values)
        elif edit == "session_key" and isinstance(payload.get("session"), dict):
            payload["session"][draw(_keys)] = draw(json_values)
        elif edit == "session_del" and isinstance(payload.get("session"), dict):
            session = payload["session"]
            if session:
                del session[draw(st.sampled_from(sorted(session)))]
    return payload


@st.composite
def corrupted_bytes(draw: st.DrawFn, payloads: list[dict[str, Any]]) -> bytes:
    """A fixture's JSON bytes, truncated, with bytes flipped or inserted (often not UTF-8)."""
    data = bytearray(json.dumps(draw(st.sampled_from(payloads))).encode())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(data)))
        edit = draw(st.sampled_from(["truncate", "flip", "insert"]))
        if edit == "truncate":
            del data[position:]
        elif edit == "flip" and position < len(data):
            data[position] = draw(st.integers(min_value=0, max_value=255))
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


random_bytes = (
    st.binary(max_size=200)
    | st.binary(max_size=20).map(lambda b: b"\xff\xfe" + b)
    | st.sampled_from([b"", b"\x80", b"\xc3\x28", b"\xed\xa0\x80", b"null", b"[]", b"{}"])
)

# ---------------------------------------------------------------------------------------------
# Checks shared by the properties


def _check_details(exc: InvalidEventError | InvalidActionError) -> None:
    assert isinstance(exc.details, list)
    assert exc.details, "an error without details"
    for line in exc.details:
        assert isinstance(line, str)
        assert ": " in line, f"detail without 'location: message': {line!r}"


def _parse_event_or_error(data: Any) -> BaseEvent | None:
    """``parse_event(data)``: the event, or ``None`` after checking the documented error."""
    try:
        event = parse_event(data)
    except InvalidEventError as exc:
        _check_details(exc)
        return None
    assert isinstance(event, BaseEvent)
    return event


def _check_event_matches(event: BaseEvent, payload: Any) -> None:
    assert isinstance(payload, dict)
    assert event.type == payload["type"]
    expected = EVENT_CLASSES.get(payload["type"], UnknownEvent)
    assert type(event) is expected


def _parse_actions_or_error(data: Any) -> list[BaseAction] | None:
    try:
        actions = parse_actions(data)
    except InvalidActionError as exc:
        _check_details(exc)
        return None
    assert isinstance(actions, list)
    for action in actions:
        assert isinstance(action, BaseAction)
        assert type(action) is ACTION_CLASSES[action.type]
    return list(actions)


# ---------------------------------------------------------------------------------------------
# (a) random JSON-ish values


@PROPERTY_SETTINGS
@given(json_values)
def test_parse_event_on_random_json_values(value: Any):
    as_json = json.dumps(value).encode()
    from_json = _parse_event_or_error(as_json)
    if isinstance(value, dict):
        from_dict = _parse_event_or_error(value)
        assert (from_dict is None) == (from_json is None)
        if from_dict is not None and from_json is not None:
            _check_event_matches(from_dict, value)
            _check_event_matches(from_json, value)
            assert dump_event(from_dict) == dump_event(from_json)
    else:
        # Anything but an object is never an event.
        assert from_json is None
        direct = _parse_event_or_error(value)  # a str is read as JSON text, the rest rejected
        if not isinstance(value, str):
            assert direct is None


# ---------------------------------------------------------------------------------------------
# (b) mutated valid payloads


@PROPERTY_SETTINGS
@given(mutated_payload(EVENT_PAYLOADS))
def test_parse_event_on_mutated_fixtures(payload: dict[str, Any]):
    from_dict = _parse_event_or_error(payload)
    from_json = _parse_event_or_error(json.dumps(payload).encode())
    from_text = _parse_event_or_error(json.dumps(payload, ensure_ascii=False))
    assert (from_dict is None) == (from_json is None) == (from_text is None)
    for event in (from_dict, from_json, from_text):
        if event is not None:
            _check_event_matches(event, payload)
            assert event.session is None or event.session.id == payload["session"]["id"]


@PROPERTY_SETTINGS
@given(st.sampled_from(EVENT_PAYLOADS), _type_strings)
def test_parse_event_keeps_any_type_string(payload: dict[str, Any], new_type: str):
    payload = {**payload, "type": new_type}
    event = _parse_event_or_error(payload)
    if new_type not in EVENT_CLASSES:
        # Unknown types are forward compatible: a valid session makes an UnknownEvent.
        assert isinstance(event, UnknownEvent)
    if event is not None:
        _check_event_matches(event, payload)


# ---------------------------------------------------------------------------------------------
# (c) random bytes


@PROPERTY_SETTINGS
@given(random_bytes | corrupted_bytes(EVENT_PAYLOADS))
def test_parse_event_on_random_bytes(data: bytes):
    event = _parse_event_or_error(data)
    if event is not None:
        payload = json.loads(data)
        _check_event_matches(event, payload)
    assert (_parse_event_or_error(bytearray(data)) is None) == (event is None)


@PROPERTY_SETTINGS
@given(st.text(max_size=200))
def test_parse_event_on_random_text(text: str):
    event = _parse_event_or_error(text)
    if event is not None:
        _check_event_matches(event, json.loads(text))


def test_parse_event_on_unencodable_text():
    # A lone surrogate cannot be encoded as UTF-8; this must still be the documented error.
    assert _parse_event_or_error('{"type":"session_start","session":{"id":"\ud800"}}') is None


# ---------------------------------------------------------------------------------------------
# (d) the same for parse_actions


@st.composite
def mutated_reply(draw: st.DrawFn) -> Any:
    """A reply body: one action or an array of them, some mutated, some random."""
    items = draw(
        st.lists(
            st.sampled_from(ACTION_PAYLOADS) | mutated_payload(ACTION_PAYLOADS) | json_values,
            max_size=4,
        )
    )
    if len(items) == 1 and draw(st.booleans()):
        return items[0]
    return items


@PROPERTY_SETTINGS
@given(json_values | mutated_reply())
def test_parse_actions_on_random_replies(reply: Any):
    from_json = _parse_actions_or_error(json.dumps(reply).encode())
    if isinstance(reply, (dict, list)):
        from_value = _parse_actions_or_error(reply)
        assert (from_value is None) == (from_json is None)
    if from_json is not None and isinstance(reply, (dict, list)):
        items = reply if isinstance(reply, list) else [reply]
        assert len(from_json) == len(items)
        for action, item in zip(from_json, items, strict=True):
            assert action.type == item["type"]
            # A valid action is exactly what was sent: nothing is coerced or dropped.
            assert dump_action(action) == {k: v for k, v in item.items() if v is not None}


@PROPERTY_SETTINGS
@given(random_bytes | corrupted_bytes(ACTION_PAYLOADS) | st.text(max_size=100))
def test_parse_actions_on_random_bytes(data: bytes | str):
    _parse_actions_or_error(data)


@PROPERTY_SETTINGS
@given(json_values | mutated_payload(ACTION_PAYLOADS))
def test_parse_action_on_random_values(value: Any):
    try:
        action = parse_action(value) if isinstance(value, dict) else None
    except InvalidActionError as exc:
        _check_details(exc)
        action = None
    if action is not None:
        assert type(action) is ACTION_CLASSES[value["type"]]


# ---------------------------------------------------------------------------------------------
# Regressions found by the properties above.


@pytest.mark.parametrize(
    "body",
    [
        b'""',  # a JSON string is not an array: currently returns []
        b'["{\\"type\\":\\"hangup\\",\\"session_id\\":\\"s1\\"}"]',  # a string, not an object
    ],
    ids=["empty-json-string", "action-json-inside-a-string"],
)
def test_parse_actions_rejects_strings(body: bytes):
    with pytest.raises(InvalidActionError):
        parse_actions(body)


def test_parse_actions_on_deeply_nested_json():
    with pytest.raises(InvalidActionError):
        parse_actions(b"[" * 100_000)


def test_parse_event_on_deeply_nested_json():
    with pytest.raises(InvalidEventError):
        parse_event(b"[" * 100_000)
    with pytest.raises(InvalidEventError):
        parse_event(b'{"type":"x","session":{"id":"s"},"deep":' + b"[" * 5000 + b"]" * 5000 + b"}")


@PROPERTY_SETTINGS
@given(mutated_payload(ACTION_PAYLOADS))
def test_action_error_details_are_one_line_each(payload: dict[str, Any]):
    try:
        parse_action(payload)
    except InvalidActionError as exc:
        details = exc.details
    else:
        return
    assert all("\n" not in line for line in details), details
