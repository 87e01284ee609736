"""Conformance with the wire contract: every documented example, and the protocol text itself.

Two kinds of checks live here:

* the JSON examples of the protocol reference and the original doc pages, stored one per file
  under ``tests/fixtures/`` (see the README there), parse into the right model and dump back
  unchanged; the examples that contradict the preferred protocol are rejected;
* ``docs/protocol.md``, the repository's own reference of the wire contract, is read and its
  event/action lists, field tables and enum values are compared with the models, so a type or
  field added to the contract fails here until the SDK follows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sipgate_ai_flow import (
    AiFlowActionType,
    AiFlowEventType,
    AssistantSpeakEvent,
    AssistantSpeechEndedEvent,
    AudioAction,
    BargeInAction,
    BargeInConfig,
    BargeInStrategy,
    BaseAction,
    BaseEvent,
    ConfigureTranscriptionAction,
    ConfigureVoiceToVoiceAction,
    Direction,
    DtmfReceivedEvent,
    HangupAction,
    InvalidActionError,
    InvalidEventError,
    MixAudioAction,
    SendSmsAction,
    SessionEndEvent,
    SessionInfo,
    SessionStartEvent,
    SmsFailedEvent,
    SpeakAction,
    SttProvider,
    TransferAction,
    TtsConfig,
    TtsProvider,
    UserBargeInEvent,
    UserInputTimeoutEvent,
    UserSpeakEvent,
    UserSpeechStartedEvent,
    VadConfig,
    dump_action,
    dump_event,
    parse_action,
    parse_actions,
    parse_event,
)
from sipgate_ai_flow.actions import ACTION_CLASSES
from sipgate_ai_flow.events import KNOWN_EVENT_CLASSES

FIXTURES = Path(__file__).parents[1] / "fixtures"
PROTOCOL = Path(__file__).parents[2] / "docs" / "protocol.md"

# Written out by hand on purpose: the fixture tests must not trust the models' own defaults.
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
ACTION_CLASSES_BY_TYPE: dict[str, type[BaseAction]] = {
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

# For each rejected example: the field the error must name, and (for actions of a known type)
# the ``location`` a one-line-per-problem detail should carry.
INVALID_ACTIONS: dict[str, tuple[str, str | None]] = {
    "transfer.protocol_3_5_transfer_to.json": ("transfer_to", "transfer.transfer_to"),
    "transfer.seed_002_transfer_to.json": ("transfer_to", "transfer.transfer_to"),
    "transfer.protocol_4_4_target.json": ("target", "transfer.target"),
    "transfer.protocol_4_4_destination.json": ("destination", "transfer.destination"),
    "speak.protocol_6_voice_name_object.json": ("voice", "speak.tts.voice"),
    "speak.protocol_6_voice_id_object.json": ("voice", "speak.tts.voice"),
    "connected.protocol_9.json": ("type", None),
    "error.protocol_9.json": ("type", None),
}
INVALID_EVENTS: dict[str, str] = {
    "no_type.seed_001.json": "type",
}


def _fixture_files(kind: str) -> list[Path]:
    files = sorted((FIXTURES / kind).glob("*.json"))
    assert files, f"no fixtures in {FIXTURES / kind}"
    return files


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_bytes())
    assert isinstance(data, dict), f"{path.name}: a fixture must hold one JSON object"
    return data


EVENT_FILES = _fixture_files("events")
ACTION_FILES = _fixture_files("actions")
INVALID_ACTION_FILES = _fixture_files("invalid_actions")
INVALID_EVENT_FILES = _fixture_files("invalid_events")


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


# --------------------------------------------------------------------------------------------
# Fixtures: the documented examples


def test_fixture_names_match_their_type():
    for path in [*EVENT_FILES, *ACTION_FILES]:
        assert path.name.split(".")[0] == _load(path)["type"], path.name


def test_every_fixture_is_listed_in_the_readme():
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    for path in [*EVENT_FILES, *ACTION_FILES, *INVALID_ACTION_FILES, *INVALID_EVENT_FILES]:
        assert f"`{path.parent.name}/{path.name}`" in readme, f"{path.name} missing in README"


def test_every_type_has_a_fixture():
    assert {_load(p)["type"] for p in EVENT_FILES} == {e.value for e in AiFlowEventType}
    assert {_load(p)["type"] for p in ACTION_FILES} == {a.value for a in AiFlowActionType}


@pytest.mark.parametrize("path", EVENT_FILES, ids=_ids(EVENT_FILES))
def test_event_fixture_parses_and_round_trips(path: Path):
    raw = path.read_bytes()
    raw_dict = _load(path)
    expected = EVENT_CLASSES[raw_dict["type"]]

    from_bytes = parse_event(raw)
    from_dict = parse_event(raw_dict)

    assert type(from_bytes) is expected
    assert type(from_dict) is expected
    assert from_bytes.type == raw_dict["type"]
    assert from_bytes == from_dict
    assert from_bytes.session is not None
    assert from_bytes.session.id == raw_dict["session"]["id"]
    assert dump_event(from_bytes) == raw_dict
    assert dump_event(from_dict) == raw_dict
    # The dump is itself a valid event that dumps the same way.
    assert dump_event(parse_event(json.dumps(dump_event(from_bytes)))) == raw_dict


@pytest.mark.parametrize("path", ACTION_FILES, ids=_ids(ACTION_FILES))
def test_action_fixture_parses_and_round_trips(path: Path):
    raw = path.read_bytes()
    raw_dict = _load(path)
    expected = ACTION_CLASSES_BY_TYPE[raw_dict["type"]]

    from_bytes = parse_action(raw)
    from_dict = parse_action(raw_dict)

    assert type(from_bytes) is expected
    assert type(from_dict) is expected
    assert from_bytes == from_dict
    assert from_bytes.session_id == raw_dict["session_id"]
    assert dump_action(from_bytes) == raw_dict
    assert dump_action(from_dict) == raw_dict
    assert parse_actions(raw) == [from_bytes]


def test_parse_actions_keeps_the_order_of_all_fixtures():
    raw_dicts = [_load(p) for p in ACTION_FILES]
    body = b"[" + b",".join(p.read_bytes() for p in ACTION_FILES) + b"]"

    for parsed in (parse_actions(body), parse_actions(raw_dicts)):
        assert [type(a) for a in parsed] == [ACTION_CLASSES_BY_TYPE[d["type"]] for d in raw_dicts]
        assert [dump_action(a) for a in parsed] == raw_dicts
    # Reversed, to be sure the order is the input's and not some canonical one.
    reversed_dicts = raw_dicts[::-1]
    assert [dump_action(a) for a in parse_actions(reversed_dicts)] == reversed_dicts
    assert parse_actions(b"[]") == []


def test_invalid_fixtures_are_all_described():
    assert set(_ids(INVALID_ACTION_FILES)) == set(INVALID_ACTIONS)
    assert set(_ids(INVALID_EVENT_FILES)) == set(INVALID_EVENTS)


@pytest.mark.parametrize("path", INVALID_ACTION_FILES, ids=_ids(INVALID_ACTION_FILES))
def test_contradicting_action_examples_are_rejected(path: Path):
    field, _ = INVALID_ACTIONS[path.name]
    raw_dict = _load(path)

    for data in (path.read_bytes(), raw_dict):
        with pytest.raises(InvalidActionError) as info:
            parse_action(data)
        assert info.value.details
        assert re.search(rf"\b{re.escape(field)}\b", str(info.value)), str(info.value)
        assert any(re.search(rf"\b{re.escape(field)}\b", d) for d in info.value.details)

    # Inside a reply array the problem is reported against the item's index.
    valid = [_load(p) for p in ACTION_FILES[:2]]
    with pytest.raises(InvalidActionError) as info:
        parse_actions([*valid, raw_dict])
    assert info.value.details
    assert all(d.startswith("[2].") for d in info.value.details), info.value.details
    assert field in str(info.value)


_KNOWN_TYPE_INVALID = [p for p in INVALID_ACTION_FILES if INVALID_ACTIONS[p.name][1] is not None]


@pytest.mark.parametrize("path", _KNOWN_TYPE_INVALID, ids=_ids(_KNOWN_TYPE_INVALID))
def test_contradicting_action_examples_name_the_field_location(path: Path):
    _, location = INVALID_ACTIONS[path.name]
    with pytest.raises(InvalidActionError) as info:
        parse_action(_load(path))
    details = info.value.details
    # One line per problem, and one of them is located exactly at the offending field.
    assert all("\n" not in d for d in details), details
    assert location in [d.split(": ", 1)[0] for d in details], details


@pytest.mark.parametrize("path", INVALID_EVENT_FILES, ids=_ids(INVALID_EVENT_FILES))
def test_invalid_event_examples_are_rejected(path: Path):
    field = INVALID_EVENTS[path.name]
    for data in (path.read_bytes(), _load(path)):
        with pytest.raises(InvalidEventError) as info:
            parse_event(data)
        assert any(d.split(": ", 1)[0] == field for d in info.value.details), info.value.details


# --------------------------------------------------------------------------------------------
# The protocol document itself


@pytest.fixture(scope="module")
def protocol() -> str:
    if not PROTOCOL.is_file():
        pytest.fail(
            f"the wire contract {PROTOCOL} is missing: the conformance tests read it from "
            "docs/protocol.md in this repository"
        )
    return PROTOCOL.read_text(encoding="utf-8")


def _section(text: str, number: str) -> str:
    """The body of ``## <number>.`` or ``### <number>`` up to the next heading of that level."""
    level = "##" if "." not in number else "###"
    suffix = "." if level == "##" else ""
    start = re.search(rf"^{level} {re.escape(number + suffix)}[ \t]", text, re.MULTILINE)
    assert start, f"protocol.md has no section {level} {number}"
    end = re.compile(rf"^#{{2,{len(level)}}} ", re.MULTILINE).search(text, start.end())
    return text[start.end() : end.start() if end else len(text)]


def _subsections(section: str) -> Iterator[tuple[str, str, str]]:
    """``(number, heading, body)`` for each ``### N.M heading`` in a ``##`` section."""
    heads = list(re.finditer(r"^### (\d+\.\d+)[ \t]+(.*)$", section, re.MULTILINE))
    for head, nxt in zip(heads, [*heads[1:], None], strict=True):
        yield head[1], head[2], section[head.end() : nxt.start() if nxt else len(section)]


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip() for c in cells[1:-1]]


def _tables(body: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table in ``body`` as ``(header, rows)``."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    block: list[str] = []
    for line in [*body.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and re.fullmatch(r"[\s|:\-]+", block[1]):
            tables.append((_split_row(block[0]), [_split_row(r) for r in block[2:]]))
        block = []
    return tables


def _table(body: str, first_header: str) -> list[list[str]]:
    found = [rows for header, rows in _tables(body) if header and header[0] == first_header]
    assert len(found) == 1, f"expected one table starting with '{first_header}', got {len(found)}"
    assert found[0], f"the '{first_header}' table has no rows"
    return found[0]


def _leading_code(cell: str) -> str | None:
    """The name in a cell that *starts* with a code span: ```text``` -> ``text``."""
    match = re.match(r"`([^`]+)`", cell)
    return match[1] if match else None


def _codes(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _column(header: list[str], name: str) -> int:
    assert name in header, f"no '{name}' column in {header}"
    return header.index(name)


def _event_table(protocol: str) -> tuple[list[str], list[list[str]]]:
    tables = [t for t in _tables(_section(protocol, "3")) if t[0] and t[0][0] == "Event"]
    assert len(tables) == 1, "§3 must hold exactly one 'Event' table"
    return tables[0]


def _protocol_event_types(protocol: str) -> set[str]:
    _, rows = _event_table(protocol)
    names = [_leading_code(row[0]) for row in rows]
    assert all(names), f"an event row does not start with a `code` name: {rows}"
    return {n for n in names if n}


def _protocol_action_types(protocol: str) -> set[str]:
    section = _section(protocol, "4")
    match = re.search(r"Current action types[^\n]*\n(.*?)(?:\n\s*\n)", section, re.DOTALL)
    assert match, "§4 has no 'Current action types' list"
    names = set(_codes(match[1]))
    assert names, "the 'Current action types' list names no types"
    return names


def _event_model(name: str) -> type[BaseEvent]:
    return {_type_default(c): c for c in KNOWN_EVENT_CLASSES}[name]


def _action_model(name: str) -> type[BaseAction]:
    return {_type_default(c): c for c in ACTION_CLASSES}[name]


def _type_default(cls: type[BaseModel]) -> str:
    default = cls.model_fields["type"].default
    assert isinstance(default, str), f"{cls.__name__}.type has no string default"
    return default


def test_event_types_match_the_protocol(protocol: str):
    documented = _protocol_event_types(protocol)
    assert "session_start" in documented  # the parser found the table
    assert documented == {e.value for e in AiFlowEventType}


def test_action_types_match_the_protocol(protocol: str):
    documented = _protocol_action_types(protocol)
    assert "speak" in documented
    assert documented == {a.value for a in AiFlowActionType}


def test_every_event_type_has_a_model_class(protocol: str):
    defaults = [_type_default(c) for c in KNOWN_EVENT_CLASSES]
    assert len(defaults) == len(set(defaults)), "two event classes share a type"
    for name in _protocol_event_types(protocol):
        cls = _event_model(name)
        assert cls is EVENT_CLASSES[name]
        assert issubclass(cls, BaseEvent)
        assert cls.model_fields["type"].default == name
        assert "session" in cls.model_fields


def test_every_action_type_has_a_model_class(protocol: str):
    defaults = [_type_default(c) for c in ACTION_CLASSES]
    assert len(defaults) == len(set(defaults)), "two action classes share a type"
    for name in _protocol_action_types(protocol):
        cls = _action_model(name)
        assert cls is ACTION_CLASSES_BY_TYPE[name]
        assert issubclass(cls, BaseAction)
        assert cls.model_fields["type"].default == name
        assert "session_id" in cls.model_fields


def _required(cls: type[BaseModel]) -> set[str]:
    return {name for name, field in cls.model_fields.items() if field.is_required()}


def test_event_table_extra_fields_exist(protocol: str):
    header, rows = _event_table(protocol)
    extra = _column(header, "Extra fields")
    checked = 0
    for row in rows:
        name = _leading_code(row[0])
        assert name
        for code in _codes(row[extra]):
            optional = code.endswith("?")
            field = code.rstrip("?")
            model = _event_model(name)
            assert field in model.model_fields, f"{name}.{field} is not a model field"
            assert model.model_fields[field].is_required() is not optional, f"{name}.{field}"
            checked += 1
    assert checked >= 6  # text, barged_in, digit, text, ssml, duration_ms, ...


def _field_tables(protocol: str, part: str) -> dict[str, tuple[str, list[str], list[list[str]]]]:
    """``{number: (wire type, header, rows)}`` for each ``### part.N `type``` with a Field table."""
    found: dict[str, tuple[str, list[str], list[list[str]]]] = {}
    for number, heading, body in _subsections(_section(protocol, part)):
        name = _leading_code(heading)
        for header, rows in _tables(body):
            if name and header and header[0] == "Field":
                assert number not in found, f"§{number} has two Field tables"
                found[number] = (name, header, rows)
    return found


def test_event_field_tables_match_the_models(protocol: str):
    tables = _field_tables(protocol, "3")
    assert {"3.3", "3.6"} <= set(tables), sorted(tables)
    for number, (name, header, rows) in tables.items():
        model = _event_model(name)
        required = _column(header, "Required")
        for row in rows:
            field = _leading_code(row[0])
            assert field, f"§{number}: a row without a `field`: {row}"
            assert field in model.model_fields, f"§{number}: {name}.{field} is not a model field"
            is_required = row[required].lower().startswith("yes")
            assert model.model_fields[field].is_required() is is_required, f"{name}.{field}"


# Optional on the models by design: ``type`` has a default and the assistant fills
# ``session_id`` from the event it answers.
_FILLED_IN = {"type", "session_id"}


def test_action_field_tables_match_the_models(protocol: str):
    tables = _field_tables(protocol, "4")
    assert {"4.1", "4.2", "4.3", "4.4", "4.7", "4.8", "4.9"} <= set(tables), sorted(tables)
    for number, (name, header, rows) in tables.items():
        model = _action_model(name)
        required = _column(header, "Required")
        for row in rows:
            field = _leading_code(row[0])
            assert field, f"§{number}: a row without a `field`: {row}"
            assert field in model.model_fields, f"§{number}: {name}.{field} is not a model field"
            rule = row[required].lower()
            if field in _FILLED_IN or rule not in {"yes", "no"}:
                continue  # conditional rules ("one of text/ssml") are checked by validators
            assert model.model_fields[field].is_required() is (rule == "yes"), f"{name}.{field}"


def test_session_table_matches_session_info(protocol: str):
    rows = _table(_section(protocol, "2"), "Field")
    fields = {_leading_code(row[0]) for row in rows}
    assert None not in fields
    assert fields == set(SessionInfo.model_fields)
    # The SDK only requires the id (protocol §2 notes); everything else is tolerated missing.
    assert _required(SessionInfo) == {"id"}


def test_barge_in_config_matches_protocol(protocol: str):
    section = _section(protocol, "5")
    rows = _table(section, "Field")
    fields = {_leading_code(row[0]) for row in rows}
    assert fields == set(BargeInConfig.model_fields)
    (strategy_row,) = [row for row in rows if _leading_code(row[0]) == "strategy"]
    header = next(h for h, _ in _tables(section) if h and h[0] == "Field")
    strategies = set(_codes(strategy_row[_column(header, "Range")]))
    assert "none" in strategies
    assert strategies == {s.value for s in BargeInStrategy}
    # The "Strategies" bullet list ("- `name` — meaning") names the same four.
    bullets = set(re.findall(r"^- `([a-z_]+)`[^\n—]*—", section, re.MULTILINE))
    assert bullets == strategies


def test_tts_providers_match_protocol(protocol: str):
    section = _section(protocol, "6")
    rows = _table(section, "Provider value")
    # Only rows whose first cell *is* a code span name a confirmed provider value.
    providers = {name for row in rows if (name := _leading_code(row[0]))}
    assert "azure" in providers
    assert providers == {p.value for p in TtsProvider}
    fields = {
        f.rstrip("?")
        for row in rows
        if _leading_code(row[0])
        for f in _codes(row[1])
        if re.fullmatch(r"[a-z_]+\??", f)  # field names, not example values like `en-US`
    }
    assert {"language", "voice"} <= fields
    assert fields <= set(TtsConfig.model_fields)
    # The two §6 examples are valid TtsConfig objects.
    for example in re.findall(r"^\{.*\}$", section, re.MULTILINE):
        config = TtsConfig(**json.loads(example))
        assert config.model_dump(mode="json", exclude_none=True) == json.loads(example)


def test_stt_providers_match_protocol(protocol: str):
    body = _section(protocol, "4.7")
    rows = _table(body, "Field")
    (provider_row,) = [row for row in rows if _leading_code(row[0]) == "provider"]
    providers = set(re.findall(r'`"([A-Za-z_]+)"`', " ".join(provider_row)))
    assert "DEEPGRAM" in providers
    assert providers == {p.value for p in SttProvider}


def test_vad_config_matches_protocol(protocol: str):
    section = _section(protocol, "7")
    match = re.search(r"```json\n(\{.*?\})\n```", section, re.DOTALL)
    assert match, "§7 has no JSON example"
    example = json.loads(match[1])
    assert set(example) == set(VadConfig.model_fields)
    assert VadConfig(**example).model_dump(exclude_none=True) == example


def test_direction_values_match_protocol(protocol: str):
    rows = _table(_section(protocol, "2"), "Field")
    (direction_row,) = [row for row in rows if _leading_code(row[0]) == "direction"]
    values = set(re.findall(r'`"([a-z]+)"`', direction_row[1]))
    assert values == {d.value for d in Direction}


# --------------------------------------------------------------------------------------------
# The parser above must notice a change to the contract.


def test_protocol_parser_notices_a_new_event_type(protocol: str):
    new_row = "| `call_recorded` | HTTP + WS | `url` | yes, any |\n"
    anchor = "| `session_end` |"
    assert anchor in protocol
    changed = protocol.replace(anchor, new_row + anchor, 1)
    assert _protocol_event_types(changed) == {e.value for e in AiFlowEventType} | {"call_recorded"}


def test_protocol_parser_notices_a_new_action_type(protocol: str):
    anchor = "`configure_voice_to_voice`."
    assert anchor in protocol
    changed = protocol.replace(anchor, "`configure_voice_to_voice`, `record`.", 1)
    assert "record" in _protocol_action_types(changed)
    assert _protocol_action_types(changed) != {a.value for a in AiFlowActionType}


def test_protocol_parser_notices_a_new_field(protocol: str):
    anchor = "| `message` | string | yes |"
    assert anchor in protocol
    changed = protocol.replace(anchor, "| `sender` | string | no | |\n" + anchor, 1)
    name, _, rows = _field_tables(changed, "4")["4.8"]
    assert name == "send_sms"
    fields = {_leading_code(row[0]) for row in rows}
    assert "sender" in fields
    assert not fields <= set(SendSmsAction.model_fields)
