"""Bad inputs, one row each, with the exact problem lines the SDK reports for them.

Events go through ``parse_event``; actions are built as models and parsed with ``parse_action``.
Every row pins ``exc.details`` exactly, so a changed or vaguer message fails here. Boundary values
that the protocol allows are checked to pass, on both paths.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sipgate_ai_flow import (
    AudioAction,
    BargeInConfig,
    ConfigureTranscriptionAction,
    ConfigureVoiceToVoiceAction,
    HangupAction,
    InvalidActionError,
    InvalidEventError,
    MixAudioAction,
    SendSmsAction,
    SessionStartEvent,
    SpeakAction,
    TransferAction,
    TtsConfig,
    UnknownEvent,
    UserSpeakEvent,
    VadConfig,
    dump_action,
    dump_event,
    parse_action,
    parse_event,
)
from sipgate_ai_flow.config import OutgoingModel

SESSION = {"id": "550e8400-e29b-41d4-a716-446655440000"}
WAV_B64 = "UklGRg=="  # base64 of b"RIFF"
TRANSFER = {
    "target_phone_number": "+4921155660",
    "caller_id_name": "Desk",
    "caller_id_number": "49",
}


def _without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


# -- events ---------------------------------------------------------------------------------

EVENT_ERRORS = [
    pytest.param(
        {"session": SESSION},
        ["type: Field required (every payload needs a 'type' string)"],
        id="no-type",
    ),
    pytest.param(
        {"type": 5, "session": SESSION},
        ["type: Input should be a valid string"],
        id="type-not-a-string",
    ),
    pytest.param(
        {"type": None, "session": SESSION},
        ["type: Input should be a valid string"],
        id="type-null",
    ),
    pytest.param(
        {"type": "user_speak", "text": "hi"},
        ["user_speak.session: Field required"],
        id="no-session",
    ),
    pytest.param(
        {"type": "session_start", "session": {"account_id": "a1"}},
        ["session_start.session.id: Field required"],
        id="session-without-id",
    ),
    pytest.param(
        {"type": "session_start", "session": SESSION["id"]},
        ["session_start.session: Input should be a JSON object"],
        id="session-not-an-object",
    ),
    pytest.param(
        {"type": "session_start", "session": {"id": 7}},
        ["session_start.session.id: Input should be a valid string"],
        id="session-id-not-a-string",
    ),
    pytest.param(
        {"type": "user_speak", "session": SESSION},
        ["user_speak.text: Field required"],
        id="user_speak-without-text",
    ),
    pytest.param(
        {"type": "user_speak", "text": 42, "session": SESSION},
        ["user_speak.text: Input should be a valid string"],
        id="user_speak-text-wrong-type",
    ),
    pytest.param(
        {"type": "dtmf_received", "digit": 5, "session": SESSION},
        ["dtmf_received.digit: Input should be a valid string"],
        id="dtmf-digit-an-int",
    ),
    pytest.param(
        {"type": "assistant_speak", "text": "Hi", "session": SESSION},
        [
            "assistant_speak.duration_ms: Field required",
            "assistant_speak.speech_started_at: Field required",
        ],
        id="assistant_speak-two-fields-missing",
    ),
    pytest.param(
        {"type": "user_speak", "text": "hi", "barged_in": "maybe", "session": SESSION},
        ["user_speak.barged_in: Input should be a valid boolean, unable to interpret input"],
        id="barged_in-not-a-bool",
    ),
    pytest.param(
        {"type": "x_new", "session": {}},
        ["x_new.session.id: Field required"],
        id="unknown-type-broken-session",
    ),
    pytest.param(
        {"type": "x_new", "session": "s1"},
        ["x_new.session: Input should be a JSON object"],
        id="unknown-type-session-not-an-object",
    ),
    pytest.param(
        b'{"type": "user_speak", "session": ',
        ["(root): Invalid JSON: EOF while parsing a value at line 1 column 34"],
        id="invalid-json-bytes",
    ),
    pytest.param(
        '{"type" "user_speak"}',
        ["(root): Invalid JSON: expected `:` at line 1 column 9"],
        id="invalid-json-str",
    ),
    pytest.param(
        b'[{"type": "session_start", "session": {"id": "s1"}}]',
        ["(root): Input should be a JSON object"],
        id="json-array",
    ),
    pytest.param(
        b'"session_start"',
        ["(root): Input should be a JSON object"],
        id="json-string",
    ),
    pytest.param(
        b"",
        ["(root): empty body (expected a JSON object)"],
        id="empty-body",
    ),
    pytest.param(
        42,
        ["(root): expected JSON bytes, str or a dict, got int"],
        id="python-int",
    ),
    pytest.param(
        [{"type": "session_start", "session": SESSION}],
        ["(root): expected JSON bytes, str or a dict, got list"],
        id="python-list",
    ),
    pytest.param(
        None,
        ["(root): expected JSON bytes, str or a dict, got NoneType"],
        id="python-none",
    ),
]


@pytest.mark.parametrize(("payload", "expected"), EVENT_ERRORS)
def test_parse_event_names_every_problem(payload, expected):
    # A dict payload must give the same lines whether it arrives decoded, as bytes or as str.
    forms = [payload]
    if isinstance(payload, dict):
        forms += [json.dumps(payload).encode(), json.dumps(payload)]
    for form in forms:
        with pytest.raises(InvalidEventError) as info:
            parse_event(form)
        assert info.value.details == expected, f"input form {type(form).__name__}"
        assert isinstance(info.value, ValueError)
        head = f"Invalid event: {len(expected)} problem{'s' if len(expected) != 1 else ''}"
        assert str(info.value) == "\n  ".join([head, *expected])


def test_unknown_type_with_extra_fields_is_kept_as_unknown_event():
    payload = {
        "type": "x_new_feature",
        "session": {**SESSION, "region": "eu"},
        "score": 0.5,
        "tags": ["a", "b"],
    }
    for form in (payload, json.dumps(payload).encode(), json.dumps(payload)):
        event = parse_event(form)
        assert isinstance(event, UnknownEvent)
        assert event.type == "x_new_feature"
        assert event.model_extra == {"score": 0.5, "tags": ["a", "b"]}
        assert event.session is not None
        assert event.session.id == SESSION["id"]
        assert event.session.model_extra == {"region": "eu"}
        assert dump_event(event) == payload


def test_unknown_type_without_session_is_accepted():
    event = parse_event(b'{"type": "x_new", "detail": 1}')
    assert isinstance(event, UnknownEvent)
    assert event.session is None
    assert event.model_extra == {"detail": 1}


@pytest.mark.parametrize(
    "number", ["+4915790000687", "4915790000687"], ids=["with-plus", "without-plus"]
)
def test_phone_numbers_are_kept_as_sent(number):
    session = {
        **SESSION,
        "phone_number": number,
        "from_phone_number": number,
        "to_phone_number": number,
        "direction": "outbound",
    }
    event = parse_event({"type": "session_start", "session": session})
    assert isinstance(event, SessionStartEvent)
    assert event.session.phone_number == number
    assert event.session.from_phone_number == number
    assert event.session.to_phone_number == number


def test_unknown_fields_on_known_event_and_session_are_kept():
    payload = {
        "type": "user_speak",
        "text": "Hallo",
        "barged_in": True,
        "confidence": 0.93,
        "session": {**SESSION, "tenant": {"plan": "pro"}},
    }
    event = parse_event(json.dumps(payload))
    assert isinstance(event, UserSpeakEvent)
    assert event.barged_in is True
    assert event.model_extra == {"confidence": 0.93}
    assert event.session.model_extra == {"tenant": {"plan": "pro"}}
    assert dump_event(event) == payload


# -- actions: shared cases -------------------------------------------------------------------

# Each row is valid on the wire as {"type": <cls type>, **fields}, so the same row runs through
# the model constructor and through ``parse_action``; both must report the same lines.
ACTION_ERRORS = [
    pytest.param(
        SpeakAction,
        {"text": "Hi", "ssml": "<speak>Hi</speak>"},
        ["speak: exactly one of 'text' or 'ssml' is required (both were given)"],
        id="speak-text-and-ssml",
    ),
    pytest.param(
        SpeakAction,
        {},
        ["speak: exactly one of 'text' or 'ssml' is required (neither was given)"],
        id="speak-neither-text-nor-ssml",
    ),
    pytest.param(
        SpeakAction,
        {"txt": "Hi"},
        ["speak.txt: Extra inputs are not permitted"],
        id="speak-typo-txt",
    ),
    pytest.param(
        SpeakAction,
        {"text": "Hi", "user_input_timeout_seconds": -1},
        ["speak.user_input_timeout_seconds: Input should be greater than or equal to 0"],
        id="speak-negative-input-timeout",
    ),
    pytest.param(
        TransferAction,
        {**TRANSFER, "timeout": 4},
        ["transfer.timeout: Input should be greater than or equal to 5"],
        id="transfer-timeout-4",
    ),
    pytest.param(
        TransferAction,
        {**TRANSFER, "timeout": 121},
        ["transfer.timeout: Input should be less than or equal to 120"],
        id="transfer-timeout-121",
    ),
    *(
        pytest.param(
            TransferAction,
            _without(TRANSFER, field),
            [f"transfer.{field}: Field required"],
            id=f"transfer-missing-{field}",
        )
        for field in TRANSFER
    ),
    pytest.param(
        TransferAction,
        {"transfer_to": "+4921155660", "caller_id_name": "Desk", "caller_id_number": "49"},
        [
            "transfer.target_phone_number: Field required",
            "transfer.transfer_to: Extra inputs are not permitted",
        ],
        id="transfer-transfer_to-instead-of-target_phone_number",
    ),
    pytest.param(
        ConfigureTranscriptionAction,
        {"languages": []},
        [
            "configure_transcription.languages: "
            "List should have at least 1 item after validation, not 0"
        ],
        id="languages-empty",
    ),
    pytest.param(
        ConfigureTranscriptionAction,
        {"languages": ["de-DE", "en-US", "fr-FR", "es-ES", "it-IT"]},
        [
            "configure_transcription.languages: "
            "List should have at most 4 items after validation, not 5"
        ],
        id="languages-5-entries",
    ),
    pytest.param(
        ConfigureTranscriptionAction,
        {"custom_vocabulary": [f"word{i}" for i in range(101)]},
        [
            "configure_transcription.custom_vocabulary: "
            "List should have at most 100 items after validation, not 101"
        ],
        id="vocabulary-101-entries",
    ),
    pytest.param(
        ConfigureTranscriptionAction,
        {"custom_vocabulary": ["sipgate", "x" * 201]},
        ["configure_transcription.custom_vocabulary.1: String should have at most 200 characters"],
        id="vocabulary-entry-201-chars",
    ),
    pytest.param(
        ConfigureTranscriptionAction,
        {"provider": "deepgram"},
        ["configure_transcription.provider: Input should be 'AZURE', 'DEEPGRAM' or 'ELEVEN_LABS'"],
        id="stt-provider-lower-case",
    ),
    pytest.param(
        MixAudioAction,
        {"audio": WAV_B64, "volume": 1.5},
        ["mix_audio.volume: Input should be less than or equal to 1"],
        id="mix_audio-volume-1.5",
    ),
    pytest.param(
        MixAudioAction,
        {},
        ["mix_audio: 'audio' is required unless 'stop' is true"],
        id="mix_audio-neither-audio-nor-stop",
    ),
    pytest.param(
        MixAudioAction,
        {"stop": False},
        ["mix_audio: 'audio' is required unless 'stop' is true"],
        id="mix_audio-stop-false-without-audio",
    ),
    pytest.param(
        MixAudioAction,
        {"audio": "not base64!"},
        ["mix_audio.audio: must be valid base64 (a base64-encoded WAV file)"],
        id="mix_audio-audio-not-base64",
    ),
    pytest.param(
        AudioAction,
        {"audio": "not base64!"},
        ["audio.audio: must be valid base64 (a base64-encoded WAV file)"],
        id="audio-not-base64",
    ),
    pytest.param(
        ConfigureVoiceToVoiceAction,
        {"system_prompt": "Be brief.", "temperature": 2.5},
        ["configure_voice_to_voice.temperature: Input should be less than or equal to 2"],
        id="voice_to_voice-temperature-2.5",
    ),
    pytest.param(
        ConfigureVoiceToVoiceAction,
        {},
        ["configure_voice_to_voice.system_prompt: Field required"],
        id="voice_to_voice-without-system_prompt",
    ),
    pytest.param(
        SendSmsAction,
        {"phone_number": "+4915790000687"},
        ["send_sms.message: Field required"],
        id="send_sms-without-message",
    ),
    pytest.param(
        HangupAction,
        {"reason": "done"},
        ["hangup.reason: Extra inputs are not permitted"],
        id="hangup-unknown-field",
    ),
    pytest.param(
        HangupAction,
        {"session_id": 7},
        ["hangup.session_id: Input should be a valid string"],
        id="hangup-session_id-not-a-string",
    ),
]

# Nested configuration given as dicts inside an action. The location must lead from the action
# down to the field (``speak.barge_in.minimum_characters``).
NESTED_ERRORS = [
    pytest.param(
        SpeakAction,
        {"text": "Hi", "barge_in": {"strategy": "minimum_characters", "minimum_characters": 0}},
        ["speak.barge_in.minimum_characters: Input should be greater than or equal to 1"],
        id="speak-minimum_characters-0",
    ),
    pytest.param(
        SpeakAction,
        {"text": "Hi", "barge_in": {"strategy": "minimum_characters", "minimum_characters": 101}},
        ["speak.barge_in.minimum_characters: Input should be less than or equal to 100"],
        id="speak-minimum_characters-101",
    ),
    pytest.param(
        SpeakAction,
        {"text": "Hi", "barge_in": {"strategy": "immediate", "allow_after_ms": -1}},
        ["speak.barge_in.allow_after_ms: Input should be greater than or equal to 0"],
        id="speak-allow_after_ms-minus-1",
    ),
    pytest.param(
        AudioAction,
        {"audio": WAV_B64, "barge_in": {"strategy": "immediate", "allow_after_ms": 10001}},
        ["audio.barge_in.allow_after_ms: Input should be less than or equal to 10000"],
        id="audio-allow_after_ms-10001",
    ),
    pytest.param(
        SpeakAction,
        {"text": "Hi", "tts": {"provider": "elevenlabs"}},
        ["speak.tts.provider: Input should be 'azure' or 'eleven_labs'"],
        id="speak-tts-provider-elevenlabs",
    ),
    pytest.param(
        SpeakAction,
        {"text": "Hi", "vad": {"end_of_turn_silence_ms": 0}},
        ["speak.vad.end_of_turn_silence_ms: Input should be greater than 0"],
        id="speak-vad-silence-0",
    ),
]


def _wire(cls: type[OutgoingModel], fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": cls.model_fields["type"].default, "session_id": "s1", **fields}


@pytest.mark.parametrize(("cls", "fields", "expected"), ACTION_ERRORS)
def test_action_model_names_every_problem(cls, fields, expected):
    with pytest.raises(InvalidActionError) as info:
        cls(**fields)
    assert info.value.details == expected
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("cls", "fields", "expected"), ACTION_ERRORS)
def test_parse_action_names_every_problem(cls, fields, expected):
    with pytest.raises(InvalidActionError) as info:
        parse_action(_wire(cls, fields))
    assert info.value.details == expected


@pytest.mark.parametrize(("cls", "fields", "expected"), NESTED_ERRORS)
def test_nested_config_dict_names_the_full_path(cls, fields, expected):
    with pytest.raises(InvalidActionError) as info:
        cls(**fields)
    assert info.value.details == expected


@pytest.mark.parametrize(("cls", "fields", "expected"), NESTED_ERRORS)
def test_parse_action_nested_config_names_the_full_path(cls, fields, expected):
    for form in (_wire(cls, fields), json.dumps(_wire(cls, fields)).encode()):
        with pytest.raises(InvalidActionError) as info:
            parse_action(form)
        assert info.value.details == expected


# -- nested configuration built on its own ---------------------------------------------------

CONFIG_ERRORS = [
    pytest.param(
        BargeInConfig,
        {"strategy": "minimum_characters", "minimum_characters": 0},
        ["BargeInConfig.minimum_characters: Input should be greater than or equal to 1"],
        id="minimum_characters-0",
    ),
    pytest.param(
        BargeInConfig,
        {"strategy": "minimum_characters", "minimum_characters": 101},
        ["BargeInConfig.minimum_characters: Input should be less than or equal to 100"],
        id="minimum_characters-101",
    ),
    pytest.param(
        BargeInConfig,
        {"strategy": "immediate", "allow_after_ms": -1},
        ["BargeInConfig.allow_after_ms: Input should be greater than or equal to 0"],
        id="allow_after_ms-minus-1",
    ),
    pytest.param(
        BargeInConfig,
        {"strategy": "immediate", "allow_after_ms": 10001},
        ["BargeInConfig.allow_after_ms: Input should be less than or equal to 10000"],
        id="allow_after_ms-10001",
    ),
    pytest.param(
        BargeInConfig,
        {"strategy": "sometimes"},
        [
            "BargeInConfig.strategy: "
            "Input should be 'none', 'manual', 'minimum_characters' or 'immediate'"
        ],
        id="barge_in-unknown-strategy",
    ),
    pytest.param(
        TtsConfig,
        {"provider": "elevenlabs"},
        ["TtsConfig.provider: Input should be 'azure' or 'eleven_labs'"],
        id="tts-provider-elevenlabs",
    ),
    pytest.param(
        TtsConfig,
        {"provider": "azure", "speed": 1.2},
        ["TtsConfig.speed: Extra inputs are not permitted"],
        id="tts-unknown-field",
    ),
    pytest.param(
        VadConfig,
        {"end_of_turn_silence_ms": 0},
        ["VadConfig.end_of_turn_silence_ms: Input should be greater than 0"],
        id="vad-silence-0",
    ),
]


@pytest.mark.parametrize(("cls", "fields", "expected"), CONFIG_ERRORS)
def test_config_model_names_every_problem(cls, fields, expected):
    with pytest.raises(InvalidActionError) as info:
        cls(**fields)
    assert info.value.details == expected


# -- parse_action only -----------------------------------------------------------------------

PARSE_ACTION_ERRORS = [
    pytest.param(
        {"type": "speek", "session_id": "s1", "text": "Hi"},
        [
            "type: unknown type 'speek' (expected one of 'speak', 'audio', 'mix_audio', "
            "'transfer', 'hangup', 'barge_in', 'configure_transcription', 'send_sms', "
            "'configure_voice_to_voice')"
        ],
        id="unknown-action-type",
    ),
    pytest.param(
        {"session_id": "s1", "text": "Hi"},
        ["type: Field required (every payload needs a 'type' string)"],
        id="no-type",
    ),
    pytest.param(
        b'{"type": "speak", "text": ',
        ["(root): Invalid JSON: EOF while parsing a value at line 1 column 26"],
        id="invalid-json",
    ),
    pytest.param(
        b'[{"type": "hangup"}]',
        ["(root): Input should be a JSON object"],
        id="json-array",
    ),
    pytest.param(42, ["(root): Input should be a JSON object"], id="python-int"),
]


@pytest.mark.parametrize(("payload", "expected"), PARSE_ACTION_ERRORS)
def test_parse_action_rejects_what_is_not_an_action(payload, expected):
    with pytest.raises(InvalidActionError) as info:
        parse_action(payload)
    assert info.value.details == expected


# -- boundary values that must pass ----------------------------------------------------------

BOUNDARIES_OK = [
    *(
        pytest.param(
            SpeakAction,
            {"text": "Hi", "barge_in": {"strategy": "minimum_characters", "minimum_characters": n}},
            id=f"minimum_characters-{n}",
        )
        for n in (1, 100)
    ),
    *(
        pytest.param(
            AudioAction,
            {"audio": WAV_B64, "barge_in": {"strategy": "immediate", "allow_after_ms": ms}},
            id=f"allow_after_ms-{ms}",
        )
        for ms in (0, 10000)
    ),
    *(
        pytest.param(TransferAction, {**TRANSFER, "timeout": s}, id=f"transfer-timeout-{s}")
        for s in (5, 120)
    ),
    pytest.param(
        ConfigureTranscriptionAction,
        {"provider": "DEEPGRAM", "languages": ["de-DE", "en-US", "fr-FR", "es-ES"]},
        id="languages-4-entries",
    ),
    pytest.param(
        ConfigureTranscriptionAction,
        {"custom_vocabulary": [f"{i:03d}" + "v" * 197 for i in range(100)]},
        id="vocabulary-100-entries-of-200-chars",
    ),
    *(
        pytest.param(MixAudioAction, {"audio": WAV_B64, "volume": v}, id=f"volume-{v}")
        for v in (0, 1)
    ),
    *(
        pytest.param(
            ConfigureVoiceToVoiceAction,
            {"system_prompt": "Be brief.", "temperature": t},
            id=f"temperature-{t}",
        )
        for t in (0, 2)
    ),
    pytest.param(MixAudioAction, {"stop": True}, id="mix_audio-stop-without-audio"),
    pytest.param(
        SpeakAction,
        {"ssml": "<speak>Hi</speak>", "tts": {"provider": "eleven_labs", "voice": "v1"}},
        id="speak-ssml-eleven_labs",
    ),
]


@pytest.mark.parametrize(("cls", "fields"), BOUNDARIES_OK)
def test_boundary_values_pass_on_both_paths(cls, fields):
    built = cls(**fields)
    assert dump_action(built) == {"type": built.type, **fields}
    parsed = parse_action(_wire(cls, fields))
    assert type(parsed) is cls
    assert dump_action(parsed) == {"type": built.type, "session_id": "s1", **fields}
    assert parse_action(json.dumps(_wire(cls, fields))) == parsed


def test_vocabulary_entry_of_exactly_200_chars_passes_and_201_fails():
    ok = ConfigureTranscriptionAction(custom_vocabulary=["x" * 200])
    assert ok.custom_vocabulary == ["x" * 200]
    with pytest.raises(InvalidActionError) as info:
        ConfigureTranscriptionAction(custom_vocabulary=["x" * 201])
    assert info.value.details == [
        "configure_transcription.custom_vocabulary.0: String should have at most 200 characters"
    ]
