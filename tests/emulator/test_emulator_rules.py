"""The emulator's rules, one table per rule, run in process on the virtual clock.

Every call here is driven by ``simulate_call(assistant)`` (or an ``EmulatedCall`` built by
hand where the clock or the app's raw replies must be fixed) and checked against the spec of
the emulator: playback and its events, barge-in per strategy and ``allow_after_ms``, the speech
queue, ``user_input_timeout``, DTMF, transfers, hang-ups, SMS and the state-only actions, reply
shapes, and the strict validation findings. Times are the virtual times in ``call.log``.

Speech arithmetic used throughout (``CallConfig`` defaults): the assistant speaks 15 characters
per second (at least 0.3 s per item), the caller speaks 15 characters per second, and a caller
turn closes 0.5 s after the last word.
"""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Callable
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowAssistant
from sipgate_ai_flow.emulator import (
    AppTransport,
    CallConfig,
    CallEndedError,
    EmulatedCall,
    Exchange,
    InProcessTransport,
    VirtualClock,
    check_actions,
)
from sipgate_ai_flow.testing import simulate_call

SID = "6f1c0e1e-0000-4000-8000-000000000001"
EPOCH_MS = 1_700_000_000_000

PROMPT = "p" * 150  # 10.0 s of speech
TEN_S = 10.0


# -- helpers ---------------------------------------------------------------------------------


def wav_b64(*, rate: int = 16000, channels: int = 1, width: int = 2, seconds: float = 1.0) -> str:
    """A real WAV file of silence, base64-encoded."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\0" * int(rate * seconds) * channels * width)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def config(**fields: Any) -> CallConfig:
    return CallConfig(session_id=SID, **fields)


def calling(app: Any, **fields: Any) -> Any:
    """``simulate_call`` in process with this file's fixed session id."""
    return simulate_call(app, config=config(**fields))


def speak(text: str, **fields: Any) -> dict[str, Any]:
    return {"type": "speak", "text": text, **fields}


def timeline(call: EmulatedCall, *, with_actions: bool = False) -> list[tuple[float, str]]:
    """``(t, event type)`` for every event sent (and ``action:<type>`` when asked)."""
    rows = []
    for entry in call.log:
        if entry["kind"] == "event":
            rows.append((entry["t"], entry["data"]["type"]))
        elif with_actions and entry["kind"] == "action" and isinstance(entry["data"], dict):
            rows.append((entry["t"], f"action:{entry['data'].get('type')}"))
    return rows


def times(call: EmulatedCall, event_type: str) -> list[float]:
    return [t for t, kind in timeline(call) if kind == event_type]


def sent(call: EmulatedCall, event_type: str) -> list[dict[str, Any]]:
    return [e for e in call.events if e["type"] == event_type]


def said(call: EmulatedCall) -> list[str | None]:
    """The texts of ``assistant_speak`` events, in the order playback started."""
    return [e.get("text") for e in sent(call, "assistant_speak")]


def types(call: EmulatedCall) -> list[str]:
    return [e["type"] for e in call.events]


class ScriptedTransport(AppTransport):
    """An app that answers each event type with a fixed raw reply (any JSON values), so the
    emulator can be shown replies an ``AiFlowAssistant`` would never produce."""

    name = "inprocess"
    sends_speech_started = True

    def __init__(self, replies: dict[str, list[Any]]) -> None:
        super().__init__()
        self.replies = replies
        self.received: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> Exchange:
        self.received.append(event)
        return Exchange(items=list(self.replies.get(event["type"], [])))


# -- barge-in --------------------------------------------------------------------------------


def prompt_app(barge_in: dict[str, Any] | None) -> AiFlowAssistant:
    """Speaks a 10 s prompt with ``barge_in`` (omitted when None); ignores the caller."""
    fields = {} if barge_in is None else {"barge_in": barge_in}
    return AiFlowAssistant(
        on_session_start=lambda e: speak(PROMPT, **fields), on_user_speak=lambda e: None
    )


# (barge_in config, caller text, after_ms, barged_in, cut at (None: not cut), user_speak at)
BARGE_IN_CASES = [
    pytest.param(
        {"strategy": "none"}, "stop please", 1000, False, None, TEN_S, id="none-never-interrupts"
    ),
    pytest.param(
        {"strategy": "none", "allow_after_ms": 2000},
        "stop please",
        4000,
        False,
        None,
        TEN_S,
        id="none-after-window-still-never-interrupts",
    ),
    pytest.param(
        {"strategy": "manual"}, "stop please", 1000, False, None, TEN_S, id="manual-caller-ignored"
    ),
    pytest.param(
        {"strategy": "manual", "allow_after_ms": 2000},
        "stop please",
        4000,
        False,
        None,
        TEN_S,
        id="manual-after-window-caller-ignored",
    ),
    pytest.param(
        {"strategy": "minimum_characters", "minimum_characters": 3},
        "stop please",
        1000,
        True,
        1.2,  # 3 characters at 15/s after the onset at 1.0
        1 + 11 / 15 + 0.5,
        id="min-chars-3-reached",
    ),
    pytest.param(
        {"strategy": "minimum_characters", "minimum_characters": 10},
        "stop please",
        1000,
        True,
        1 + 10 / 15,
        1 + 11 / 15 + 0.5,
        id="min-chars-10-reached-at-10th-character",
    ),
    pytest.param(
        {"strategy": "minimum_characters", "minimum_characters": 20},
        "stop please",
        1000,
        False,
        None,
        TEN_S,
        id="min-chars-20-not-reached",
    ),
    pytest.param(
        {"strategy": "minimum_characters", "minimum_characters": 10},
        "stop please",
        9900,
        False,
        None,
        9.9 + 11 / 15 + 0.5,  # the turn outlasts the playback: delivered at its end
        id="min-chars-reached-only-after-playback-ended",
    ),
    pytest.param(
        {"strategy": "minimum_characters", "minimum_characters": 3, "allow_after_ms": 3000},
        "stop please",
        4000,
        True,
        4.2,
        4 + 11 / 15 + 0.5,
        id="min-chars-after-window-interrupts",
    ),
    pytest.param(
        {"strategy": "minimum_characters", "minimum_characters": 3, "allow_after_ms": 3000},
        "stop please wait a second",  # 2.5 s .. 4.17 s: still talking when the window opens
        2500,
        True,
        3.0,
        2.5 + 25 / 15 + 0.5,
        id="min-chars-reached-in-window-interrupts-when-it-opens",
    ),
    pytest.param(
        {"strategy": "minimum_characters", "minimum_characters": 3, "allow_after_ms": 3000},
        "stop please",  # 1.0 s .. 1.73 s: over long before the window opens
        1000,
        False,
        None,
        TEN_S,
        id="min-chars-before-window-no-interrupt",
    ),
    pytest.param(
        {"strategy": "immediate"}, "stop please", 1000, True, 1.0, 1 + 11 / 15 + 0.5, id="immediate"
    ),
    pytest.param(
        {"strategy": "immediate"}, "no", 1000, True, 1.0, 1 + 2 / 15 + 0.5, id="immediate-one-word"
    ),
    pytest.param(
        {"strategy": "immediate", "allow_after_ms": 3000},
        "stop please",
        4000,
        True,
        4.0,
        4 + 11 / 15 + 0.5,
        id="immediate-after-window-interrupts",
    ),
    pytest.param(
        {"strategy": "immediate", "allow_after_ms": 3000},
        "stop please",  # 1.0 s .. 1.73 s: over long before the window opens
        1000,
        False,
        None,
        TEN_S,
        id="immediate-before-window-no-interrupt",
    ),
    pytest.param(
        None, "stop please", 1000, True, 1.2, 1 + 11 / 15 + 0.5, id="default-is-min-chars-3"
    ),
    pytest.param(None, "no", 1000, False, None, TEN_S, id="default-2-characters-not-enough"),
    pytest.param(
        {"strategy": "minimum_characters"},
        "no",
        1000,
        False,
        None,
        TEN_S,
        id="min-chars-without-n-defaults-to-3",
    ),
]


@pytest.mark.parametrize(
    ("barge_in", "text", "after_ms", "barged_in", "cut_at", "user_speak_at"), BARGE_IN_CASES
)
async def test_barge_in(barge_in, text, after_ms, *, barged_in, cut_at, user_speak_at):
    async with calling(prompt_app(barge_in)) as call:
        await call.say(text, after_ms=after_ms)
        await call.silence(20)

        (user_speak,) = sent(call, "user_speak")
        assert user_speak["text"] == text
        assert user_speak["barged_in"] is barged_in
        assert times(call, "user_speech_started") == [pytest.approx(after_ms / 1000)]
        assert times(call, "user_speak") == [pytest.approx(user_speak_at, abs=0.001)]
        assert times(call, "assistant_speak") == [0.0]
        notes = [e for e in call.log if e["kind"] == "note" and "barged in" in e["data"]]
        if cut_at is None:  # played to the end, then the caller's words
            assert times(call, "assistant_speech_ended") == [TEN_S]
            assert notes == []
            if user_speak_at == TEN_S:
                assert types(call)[-2:] == ["assistant_speech_ended", "user_speak"]
        else:  # cut: never ends normally
            assert times(call, "assistant_speech_ended") == []
            assert [n["t"] for n in notes] == [pytest.approx(cut_at, abs=0.001)]
            assert call.playing is None
        assert call.findings == []


async def test_manual_playback_is_cut_only_by_a_barge_in_action():
    app = AiFlowAssistant(
        on_session_start=lambda e: speak(PROMPT, barge_in={"strategy": "manual"}),
        on_user_speak=lambda e: None,
        on_dtmf_received=lambda e: [{"type": "barge_in"}, speak("c" * 15)],
    )
    async with calling(app) as call:
        await call.say("hello hello hello", after_ms=500)  # ignored until the prompt ends
        assert sent(call, "user_speak")[0]["barged_in"] is False
        assert times(call, "assistant_speech_ended") == [TEN_S]
    async with calling(app) as call:
        await call.silence(2)
        await call.press("0")
        await call.silence(5)
        assert timeline(call) == [
            (0.0, "session_start"),
            (0.0, "assistant_speak"),
            (2.0, "dtmf_received"),
            (2.0, "assistant_speak"),  # the prompt is cut at once: no speech_ended for it
            (3.0, "assistant_speech_ended"),
        ]
        assert said(call) == [PROMPT, "c" * 15]


# -- queue and barge_in action ---------------------------------------------------------------


async def test_speak_in_one_reply_is_queued_behind_the_first():
    app = AiFlowAssistant(on_session_start=lambda e: [speak("a" * 30), speak("b" * 15)])
    async with calling(app) as call:
        await call.silence(10)
        assert timeline(call) == [
            (0.0, "session_start"),
            (0.0, "assistant_speak"),
            (2.0, "assistant_speech_ended"),
            (2.0, "assistant_speak"),  # starts when the first ends
            (3.0, "assistant_speech_ended"),
        ]
        assert said(call) == ["a" * 30, "b" * 15]
        started_at = [e["speech_started_at"] for e in sent(call, "assistant_speak")]
        assert [t - call.clock.start_epoch_ms for t in started_at] == [0, 2000]


async def test_speak_arriving_during_playback_is_queued_behind_it():
    app = AiFlowAssistant(
        on_session_start=lambda e: speak("a" * 60),  # 4 s
        on_dtmf_received=lambda e: speak("d" * 15),  # arrives at 1 s, while "a" plays
    )
    async with calling(app) as call:
        await call.silence(1)
        await call.press("5")
        await call.silence(10)
        assert timeline(call) == [
            (0.0, "session_start"),
            (0.0, "assistant_speak"),
            (1.0, "dtmf_received"),
            (4.0, "assistant_speech_ended"),
            (4.0, "assistant_speak"),
            (5.0, "assistant_speech_ended"),
        ]
        assert said(call) == ["a" * 60, "d" * 15]


async def test_speak_answering_assistant_speak_queues_behind_the_rest_of_the_array():
    def on_assistant_speak(event):
        return speak("x" * 15) if event.text == "a" * 30 else None

    app = AiFlowAssistant(
        on_session_start=lambda e: [speak("a" * 30), speak("b" * 15)],
        on_assistant_speak=on_assistant_speak,
    )
    async with calling(app) as call:
        await call.silence(10)
        # "b" came with "a" in one reply; "x" came later (answering a's assistant_speak).
        assert said(call) == ["a" * 30, "b" * 15, "x" * 15]


async def test_barge_in_action_stops_playback_and_clears_the_queue():
    app = AiFlowAssistant(
        on_session_start=lambda e: [
            speak("a" * 30, barge_in={"strategy": "none"}),
            speak("b" * 30),
            speak("b2" * 15),
        ],
        on_dtmf_received=lambda e: [{"type": "barge_in"}, speak("c" * 15)],
    )
    async with calling(app) as call:
        await call.silence(1)
        await call.press("1")
        await call.silence(10)
        assert timeline(call, with_actions=True)[-4:] == [
            (1.0, "action:barge_in"),
            (1.0, "action:speak"),
            (1.0, "assistant_speak"),
            (2.0, "assistant_speech_ended"),  # only "c" ends; "a" was cut, "b" never played
        ]
        assert said(call) == ["a" * 30, "c" * 15]
        assert times(call, "assistant_speech_ended") == [2.0]
        assert call.findings == []


async def test_barge_in_action_while_silent_is_harmless():
    app = AiFlowAssistant(on_session_start=lambda e: [{"type": "barge_in"}, speak("a" * 15)])
    async with calling(app) as call:
        await call.silence(5)
        assert said(call) == ["a" * 15]
        assert times(call, "assistant_speech_ended") == [1.0]
        assert call.findings == []


# -- durations and assistant_speak -------------------------------------------------------------

DURATION_CASES = [
    pytest.param(speak("x" * 30), {}, 2000, id="text-30-chars-default-15-per-s"),
    pytest.param(speak("x" * 30), {"speaking_rate": 10.0}, 3000, id="text-speaking-rate-10"),
    pytest.param(speak("x" * 30), {"speaking_rate": 20.0}, 1500, id="text-speaking-rate-20"),
    pytest.param(speak("Hello there"), {}, round(11 / 15 * 1000), id="text-11-chars"),
    pytest.param(
        {"type": "speak", "ssml": "<speak><prosody rate='slow'>Hello there</prosody></speak>"},
        {},
        round(11 / 15 * 1000),
        id="ssml-tags-not-spoken",
    ),
    pytest.param(speak("Hi"), {}, 300, id="short-text-at-least-300-ms"),
    pytest.param({"type": "audio", "audio": wav_b64(seconds=1.5)}, {}, 1500, id="wav-1.5-s"),
    pytest.param({"type": "audio", "audio": wav_b64(seconds=0.25)}, {}, 250, id="wav-0.25-s"),
    pytest.param(
        {"type": "audio", "audio": wav_b64(seconds=4.0)},
        {"speaking_rate": 5.0},
        4000,
        id="wav-ignores-speaking-rate",
    ),
]


@pytest.mark.parametrize(("action", "options", "duration_ms"), DURATION_CASES)
async def test_playback_duration(action, options, duration_ms):
    app = AiFlowAssistant(on_session_start=lambda e: action)
    async with calling(app, **options) as call:
        await call.silence(10)
        (started,) = sent(call, "assistant_speak")
        assert started["duration_ms"] == duration_ms
        assert times(call, "assistant_speech_ended") == [duration_ms / 1000]
        if action["type"] == "audio":
            assert "text" not in started
            assert "ssml" not in started
        else:
            key = "text" if "text" in action else "ssml"
            assert started[key] == action[key]
        assert call.findings == []


async def test_assistant_speak_fields_follow_the_virtual_clock():
    app = AiFlowAssistant(
        on_session_start=lambda e: speak("Welcome to the shop!"),  # 20 chars: 1.333 s
        on_user_speak=lambda e: [
            {"type": "audio", "audio": wav_b64(seconds=0.5)},
            speak("x" * 45),
        ],
    )
    call = EmulatedCall(
        InProcessTransport(app), config(), clock=VirtualClock(start_epoch_ms=EPOCH_MS)
    )
    await call.start()
    try:
        await call.silence(4)
        await call.say("hello")  # 4.0 s .. 4.333 s, turn closes at 4.833 s
        await call.silence(10)
    finally:
        await call.close()
    speaks = sent(call, "assistant_speak")
    assert [(e["duration_ms"], e["speech_started_at"]) for e in speaks] == [
        (1333, EPOCH_MS),
        (500, EPOCH_MS + 4833),
        (3000, EPOCH_MS + 5333),
    ]
    assert times(call, "assistant_speak") == [0.0, 4.833, 5.333]
    assert times(call, "assistant_speech_ended") == [1.333, 5.333, 8.333]
    for t, event in zip(times(call, "assistant_speak"), speaks, strict=True):
        assert event["speech_started_at"] == call.clock.epoch_ms(t)
        assert isinstance(event["speech_started_at"], int)
        assert isinstance(event["duration_ms"], int)


async def test_speech_started_at_is_epoch_milliseconds_by_default():
    import time

    app = AiFlowAssistant(on_session_start=lambda e: speak("hello"))
    before = int(time.time() * 1000)
    async with calling(app) as call:
        after = int(time.time() * 1000)
        (started,) = sent(call, "assistant_speak")
        assert before - 1000 <= started["speech_started_at"] <= after + 1000


# -- user_input_timeout ----------------------------------------------------------------------


def timeout_app(timeout: float | None, *, reprompt: bool = False) -> AiFlowAssistant:
    fields = {} if timeout is None else {"user_input_timeout_seconds": timeout}
    prompt = speak("x" * 15, **fields)  # 1 s

    return AiFlowAssistant(
        on_session_start=lambda e: prompt,
        on_user_speak=lambda e: None,
        on_dtmf_received=lambda e: None,
        on_user_input_timeout=lambda e: prompt if reprompt else None,
    )


async def _silent(call: EmulatedCall) -> None:
    await call.silence(30)


async def _speaks_at_3s(call: EmulatedCall) -> None:
    await call.silence(3)
    await call.say("hello")
    await call.silence(30)


async def _presses_at_3s(call: EmulatedCall) -> None:
    await call.silence(3)
    await call.press("7")
    await call.silence(30)


async def _speaks_at_6s(call: EmulatedCall) -> None:
    await call.silence(6)
    await call.say("hello")
    await call.silence(30)


Script = Callable[[EmulatedCall], Any]

TIMEOUT_CASES = [
    pytest.param(4, False, _silent, [5.0], id="fires-4-s-after-speech-ended"),
    pytest.param(2.5, False, _silent, [3.5], id="fractional-seconds"),
    pytest.param(4, False, _speaks_at_3s, [], id="cancelled-by-speech"),
    pytest.param(4, False, _presses_at_3s, [], id="cancelled-by-dtmf"),
    pytest.param(4, False, _speaks_at_6s, [5.0], id="speech-after-it-fired"),
    pytest.param(None, False, _silent, [], id="not-started-without-timeout"),
    pytest.param(0, False, _silent, [], id="zero-means-no-timeout"),
    pytest.param(4, True, _silent, [5.0, 10.0, 15.0, 20.0, 25.0, 30.0], id="reprompt-restarts"),
]


@pytest.mark.parametrize(("timeout", "reprompt", "script", "fired_at"), TIMEOUT_CASES)
async def test_user_input_timeout(timeout, reprompt, script, fired_at):
    async with calling(timeout_app(timeout, reprompt=reprompt)) as call:
        await script(call)
        assert times(call, "assistant_speech_ended")[0] == 1.0
        assert times(call, "user_input_timeout") == fired_at
        assert call.findings == []


async def test_timeout_fires_only_after_speech_ended_of_the_last_queued_item():
    app = AiFlowAssistant(
        on_session_start=lambda e: [
            speak("x" * 15, user_input_timeout_seconds=2),
            speak("y" * 30),  # no timeout: the caller is not waiting yet
        ]
    )
    async with calling(app) as call:
        await call.silence(20)
        assert times(call, "assistant_speech_ended") == [1.0, 3.0]
        assert times(call, "user_input_timeout") == []


async def test_timeout_does_not_fire_while_the_caller_is_talking():
    app = AiFlowAssistant(
        on_session_start=lambda e: speak(
            "x" * 30, barge_in={"strategy": "none"}, user_input_timeout_seconds=1
        ),
        on_user_speak=lambda e: None,
    )
    async with calling(app) as call:
        # The caller talks from 0.5 s to 4.5 s; playback ends at 2 s; 1 s later the caller is
        # still talking, so there was no silence to time out on.
        await call.say("y" * 60, after_ms=500)
        await call.silence(0.1)
        assert times(call, "assistant_speech_ended") == [2.0]
        assert times(call, "user_input_timeout") == []


# -- DTMF --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "digits"),
    [
        pytest.param("1", ["1"], id="one-key"),
        pytest.param("12#", ["1", "2", "#"], id="three-keys"),
        pytest.param("0123456789*#", list("0123456789*#"), id="every-key"),
    ],
)
async def test_dtmf_one_event_per_key(keys, digits):
    seen: list[str] = []
    app = AiFlowAssistant(on_dtmf_received=lambda e: seen.append(e.digit))
    async with calling(app) as call:
        await call.press(keys)
        dtmf = sent(call, "dtmf_received")
        assert [e["digit"] for e in dtmf] == digits
        assert seen == digits
        assert times(call, "dtmf_received") == [round(0.2 * i, 3) for i in range(len(digits))]


@pytest.mark.parametrize("keys", ["", "A", "1x", "12 3"])
async def test_dtmf_rejects_keys_a_phone_does_not_have(keys):
    async with calling(AiFlowAssistant()) as call:
        with pytest.raises(ValueError, match="DTMF keys"):
            await call.press(keys)
        assert sent(call, "dtmf_received") == []


# -- transfer ----------------------------------------------------------------------------------

TRANSFER = {
    "type": "transfer",
    "target_phone_number": "4921100000099",
    "caller_id_name": "Support",
    "caller_id_number": "4921100000000",
}


def transfer_app(**fields: Any) -> AiFlowAssistant:
    starts: list[str] = []

    def on_start(event):
        starts.append(event.session.id)
        return speak("Welcome back!" if len(starts) > 1 else "Hello caller!")  # 13 chars

    return AiFlowAssistant(
        on_session_start=on_start, on_user_speak=lambda e: {**TRANSFER, **fields}
    )


async def test_transfer_answered_leaves_the_assistant():
    async with calling(transfer_app(timeout=30)) as call:
        await call.say("agent please")  # 0.867 .. turn ends at 2.167
        assert call.ended
        assert call.end_reason == "transferred to 4921100000099"
        assert call.state["transfers"] == [{**TRANSFER, "session_id": SID, "timeout": 30}]
        assert types(call)[-1] == "user_speak"  # no further events after a transfer
        with pytest.raises(CallEndedError):
            await call.silence(1)
    assert types(call)[-1] == "user_speak"


async def test_transfer_answered_with_session_end_configured():
    async with calling(transfer_app(), session_end_after_transfer=True) as call:
        await call.say("agent please")
        assert call.ended
        assert types(call)[-1] == "session_end"
    assert types(call).count("session_end") == 1


@pytest.mark.parametrize("timeout", [5, 30, 120])
async def test_transfer_failed_with_timeout_returns_as_session_start(timeout):
    async with calling(transfer_app(timeout=timeout), transfer_outcome="failed") as call:
        await call.say("agent please")
        transferred_at = times(call, "user_speak")[0]
        await call.silence(timeout + 5)
        assert not call.ended
        starts = sent(call, "session_start")
        assert len(starts) == 2
        assert starts[0]["session"] == starts[1]["session"]
        assert starts[1]["session"]["id"] == SID
        assert times(call, "session_start") == [0.0, pytest.approx(transferred_at + timeout)]
        assert said(call) == ["Hello caller!", "Welcome back!"]
        assert call.state["transfers"][0]["timeout"] == timeout
        await call.say("thanks")  # the call goes on with the assistant
        assert sent(call, "user_speak")[-1]["text"] == "thanks"
    assert types(call)[-1] == "session_end"


async def test_transfer_failed_without_timeout_ends_the_call():
    async with calling(transfer_app(), transfer_outcome="failed") as call:
        await call.say("agent please")
        assert call.ended
        assert "failed" in (call.end_reason or "")
        assert timeline(call)[-2:] == [(2.167, "user_speak"), (2.167, "session_end")]
        assert len(call.state["transfers"]) == 1
    assert types(call).count("session_end") == 1
    assert types(call).count("session_start") == 1


async def test_transfer_stops_playback():
    app = AiFlowAssistant(
        on_session_start=lambda e: speak("x" * 150),
        on_dtmf_received=lambda e: {**TRANSFER, "timeout": 10},
    )
    async with calling(app, transfer_outcome="failed") as call:
        await call.silence(1)
        await call.press("9")
        await call.silence(20)
        # the greeting is cut at 1 s; only the greeting after the fallback ends
        assert times(call, "assistant_speech_ended") == [21.0]
        assert times(call, "session_start") == [0.0, 11.0]


# -- ending the call ---------------------------------------------------------------------------


async def test_hangup_action_sends_session_end_last():
    app = AiFlowAssistant(
        on_session_start=lambda e: speak("Goodbye!"),  # 8 chars: 0.533 s
        on_assistant_speech_ended=lambda e: {"type": "hangup"},
    )
    async with calling(app) as call:
        await call.wait_until_quiet()
        assert call.ended
        assert call.end_reason == "the assistant hung up"
        assert timeline(call)[-2:] == [(0.533, "assistant_speech_ended"), (0.533, "session_end")]
        with pytest.raises(CallEndedError):
            await call.say("hello?")
    assert types(call)[-1] == "session_end"
    assert types(call).count("session_end") == 1


async def test_hangup_in_an_array_skips_the_rest():
    app = AiFlowAssistant(on_session_start=lambda e: [{"type": "hangup"}, speak("too late")])
    async with calling(app) as call:
        assert call.ended
        assert types(call) == ["session_start", "session_end"]
        assert said(call) == []


async def test_caller_hangup_sends_session_end():
    app = AiFlowAssistant(on_session_start=lambda e: speak("x" * 150))
    async with calling(app) as call:
        await call.silence(2)
        await call.hangup()
        assert call.ended
        assert call.end_reason == "caller hung up"
        assert timeline(call)[-1] == (2.0, "session_end")
        assert times(call, "assistant_speech_ended") == []
        await call.hangup()  # a second hang-up is a no-op
    assert types(call).count("session_end") == 1


async def test_leaving_the_block_hangs_up():
    async with calling(AiFlowAssistant()) as call:
        await call.silence(3)
    assert call.ended
    assert types(call) == ["session_start", "session_end"]


async def test_reply_to_session_end_is_reported_not_executed():
    reply = [speak("Are you still there?"), {"type": "hangup"}]
    transport = ScriptedTransport({"session_end": reply})
    call = EmulatedCall(transport, config())
    await call.start()
    await call.silence(1)
    await call.hangup()
    await call.close()
    (finding,) = call.findings
    assert finding.code == "reply_to_session_end"
    assert "never executed" in finding.message
    assert finding.payload == reply
    assert finding.event == "session_end"
    assert call.actions == reply  # recorded
    assert types(call) == ["session_start", "session_end"]  # but not executed
    assert call.spoken == []
    assert call.log[-1]["kind"] == "finding"


async def test_sdk_assistant_never_replies_to_session_end():
    app = AiFlowAssistant(on_session_end=lambda e: speak("bye"))
    async with calling(app) as call:
        await call.hangup()
    assert call.findings == []


async def test_reply_to_user_speech_started_is_ignored():
    transport = ScriptedTransport({"user_speech_started": [speak("ignored")]})
    call = EmulatedCall(transport, config())
    await call.start()
    try:
        await call.say("hello")
        await call.silence(5)
    finally:
        await call.close()
    assert said(call) == []
    assert call.spoken == []


# -- SMS and state-only actions ----------------------------------------------------------------

SMS = {"type": "send_sms", "phone_number": "4915790000687", "message": "Your code is 1234"}


@pytest.mark.parametrize(
    ("outcome", "failed"),
    [pytest.param("sent", False, id="sent"), pytest.param("failed", True, id="failed")],
)
async def test_send_sms(outcome, failed):
    app = AiFlowAssistant(
        on_session_start=lambda e: SMS, on_sms_failed=lambda e: speak("The SMS failed.")
    )
    async with calling(app, sms_outcome=outcome) as call:
        await call.silence(5)
        assert call.state["sms"] == [{**SMS, "session_id": SID}]
        events = sent(call, "sms_failed")
        if failed:
            (event,) = events
            assert event["phone_number"] == SMS["phone_number"]
            assert event.get("reason")
            assert said(call) == ["The SMS failed."]
        else:
            assert events == []
            assert said(call) == []
        assert not call.ended
        assert call.findings == []


STATE_CASES = [
    pytest.param(
        [{"type": "mix_audio", "audio": "WAV", "volume": 0.3}],
        "mix_audio",
        {"type": "mix_audio", "session_id": SID, "audio": "WAV", "volume": 0.3},
        id="mix-audio-loop",
    ),
    pytest.param(
        [{"type": "mix_audio", "audio": "WAV"}, {"type": "mix_audio", "stop": True}],
        "mix_audio",
        None,
        id="mix-audio-stop",
    ),
    pytest.param(
        [{"type": "configure_transcription", "provider": "DEEPGRAM", "languages": ["de-DE"]}],
        "transcription",
        {"provider": "DEEPGRAM", "languages": ["de-DE"]},
        id="configure-transcription",
    ),
    pytest.param(
        [
            {"type": "configure_transcription", "provider": "AZURE", "languages": ["de-DE"]},
            {"type": "configure_transcription", "languages": ["en-US", "de-DE"]},
        ],
        "transcription",
        {"provider": "AZURE", "languages": ["en-US", "de-DE"]},
        id="configure-transcription-merges",
    ),
    pytest.param(
        [{"type": "configure_voice_to_voice", "system_prompt": "Be brief.", "temperature": 0.5}],
        "voice_to_voice",
        {
            "type": "configure_voice_to_voice",
            "session_id": SID,
            "system_prompt": "Be brief.",
            "temperature": 0.5,
        },
        id="voice-to-voice",
    ),
]


@pytest.mark.parametrize(("reply", "key", "expected"), STATE_CASES)
async def test_state_only_actions(reply, key, expected):
    audio = wav_b64(seconds=0.1)
    reply = [{**a, "audio": audio} if a.get("audio") == "WAV" else a for a in reply]
    if isinstance(expected, dict) and expected.get("audio") == "WAV":
        expected = {**expected, "audio": audio}
    app = AiFlowAssistant(on_session_start=lambda e: reply)
    async with calling(app) as call:
        await call.silence(2)
        assert call.state[key] == expected
        assert types(call) == ["session_start"]  # state only: no playback, no events
        assert call.findings == []


@pytest.mark.parametrize(
    ("vad_action", "user_speak_at"),
    [
        pytest.param(None, 1 + 5 / 15 + 0.5, id="default-500-ms"),
        pytest.param(
            {"type": "configure_transcription", "vad": {"end_of_turn_silence_ms": 1200}},
            1 + 5 / 15 + 1.2,
            id="configure-transcription-vad",
        ),
        pytest.param(
            speak("x" * 15, vad={"end_of_turn_silence_ms": 200}),
            1 + 5 / 15 + 0.2,
            id="speak-vad",
        ),
    ],
)
async def test_vad_sets_the_end_of_turn(vad_action, user_speak_at):
    reply = [speak("x" * 15)] if vad_action is None else [vad_action]
    if vad_action is not None and vad_action["type"] != "speak":
        reply.append(speak("x" * 15))
    app = AiFlowAssistant(on_session_start=lambda e: reply, on_user_speak=lambda e: None)
    async with calling(app) as call:
        await call.say("hello")
        assert times(call, "user_speak") == [pytest.approx(user_speak_at, abs=0.001)]


# -- reply shapes ------------------------------------------------------------------------------


async def test_array_reply_is_executed_in_order():
    reply = [
        {"type": "configure_transcription", "languages": ["de-DE"]},
        speak("a" * 15),
        SMS,
        speak("b" * 15),
        {"type": "mix_audio", "stop": True},
    ]
    app = AiFlowAssistant(on_session_start=lambda e: reply)
    async with calling(app) as call:
        await call.silence(5)
        assert [a["type"] for a in call.actions] == [a["type"] for a in reply]
        assert said(call) == ["a" * 15, "b" * 15]
        assert call.spoken == ["a" * 15, "b" * 15]
        assert call.state["sms"] == [{**SMS, "session_id": SID}]
        assert call.state["transcription"] == {"languages": ["de-DE"]}
        assert call.state["mix_audio"] is None
        assert times(call, "assistant_speak") == [0.0, 1.0]


async def test_event_raised_by_an_array_is_answered_after_the_array():
    app = AiFlowAssistant(
        on_session_start=lambda e: [SMS, speak("Code sent.")],
        on_sms_failed=lambda e: speak("The SMS failed."),
    )
    async with calling(app, sms_outcome="failed") as call:
        await call.silence(5)
        assert said(call) == ["Code sent.", "The SMS failed."]


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(None, id="none"),
        pytest.param([], id="empty-list"),
        pytest.param((), id="empty-tuple"),
    ],
)
async def test_empty_replies_do_nothing(reply):
    app = AiFlowAssistant(
        on_session_start=lambda e: reply,
        on_user_speak=lambda e: reply,
        on_dtmf_received=lambda e: reply,
    )
    async with calling(app) as call:
        await call.say("hello")
        await call.press("1")
        await call.silence(60)
        assert call.actions == []
        assert call.findings == []
        assert not call.ended
        assert types(call) == [
            "session_start",
            "user_speech_started",
            "user_speak",
            "dtmf_received",
        ]


@pytest.mark.parametrize(
    ("items", "spoken"),
    [
        pytest.param([], [], id="empty-array"),
        pytest.param([{"type": "speak", "session_id": SID, "text": "one"}], ["one"], id="object"),
        pytest.param(
            [
                {"type": "speak", "session_id": SID, "text": "one"},
                {"type": "speak", "session_id": SID, "text": "two"},
            ],
            ["one", "two"],
            id="array",
        ),
    ],
)
async def test_raw_reply_shapes(items, spoken):
    call = EmulatedCall(ScriptedTransport({"session_start": items}), config())
    await call.start()
    try:
        await call.silence(5)
    finally:
        await call.close()
    assert said(call) == spoken
    assert call.findings == []


@pytest.mark.parametrize(
    "item",
    [
        pytest.param("speak", id="string"),
        pytest.param(42, id="number"),
        pytest.param(None, id="null"),
        pytest.param(["nested"], id="nested-array"),
    ],
)
async def test_array_item_that_is_not_an_object(item):
    good = {"type": "speak", "session_id": SID, "text": "fine"}
    call = EmulatedCall(ScriptedTransport({"session_start": [item, good]}), config())
    await call.start()
    try:
        await call.silence(5)
    finally:
        await call.close()
    (finding,) = call.findings
    assert finding.code == "not_an_action"
    assert finding.payload == item
    assert said(call) == ["fine"]  # the valid neighbour still runs


# -- every event -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "session"),
    [
        pytest.param(
            {},
            {
                "id": SID,
                "account_id": "emulator-account",
                "phone_number": "+4921100000000",
                "direction": "inbound",
                "from_phone_number": "+4915111111111",
                "to_phone_number": "+4921100000000",
            },
            id="inbound-defaults",
        ),
        pytest.param(
            {
                "direction": "outbound",
                "from_number": "4921100000000",
                "to_number": "4915790000687",
                "account_id": "account-123",
            },
            {
                "id": SID,
                "account_id": "account-123",
                "phone_number": "4915790000687",
                "direction": "outbound",
                "from_phone_number": "4921100000000",
                "to_phone_number": "4915790000687",
            },
            id="outbound-digits",
        ),
    ],
)
async def test_every_event_carries_the_full_session(fields, session):
    app = AiFlowAssistant(
        on_session_start=lambda e: speak("Hi there", user_input_timeout_seconds=1),
        on_user_input_timeout=lambda e: [SMS, speak("Hello?")],
        on_user_speak=lambda e: {**TRANSFER, "timeout": 5},
    )
    async with calling(app, sms_outcome="failed", transfer_outcome="failed", **fields) as call:
        await call.silence(5)
        await call.press("1")
        await call.say("agent")
        await call.silence(10)
    assert set(types(call)) == {
        "session_start",
        "assistant_speak",
        "assistant_speech_ended",
        "user_input_timeout",
        "sms_failed",
        "dtmf_received",
        "user_speech_started",
        "user_speak",
        "session_end",
    }
    for event in call.events:
        assert event["session"] == session


async def test_user_speech_started_precedes_each_caller_turn_in_process():
    app = AiFlowAssistant(
        on_session_start=lambda e: speak("x" * 30, barge_in={"strategy": "immediate"}),
        on_user_speak=lambda e: speak("y" * 15),
    )
    async with calling(app) as call:
        await call.say("first", after_ms=500)  # barges in
        await call.say("second")  # polite
        await call.silence(3)
        await call.say("third")
        caller = [
            (t, kind) for t, kind in timeline(call) if kind in ("user_speech_started", "user_speak")
        ]
        # "first" barges in at 0.5 s and ends its turn at 1.333 s; the 1 s answer ends at
        # 2.333 s, when "second" starts; say() returns at its user_speak (3.233 s), + 3 s.
        onsets = [0.5, 2.333, 6.233]
        assert [kind for _, kind in caller] == ["user_speech_started", "user_speak"] * 3
        assert [t for t, kind in caller if kind == "user_speech_started"] == [
            pytest.approx(t, abs=0.001) for t in onsets
        ]
        for index, entry in enumerate(call.events):
            if entry["type"] == "user_speak":
                assert call.events[index - 1]["type"] == "user_speech_started"


# -- findings ----------------------------------------------------------------------------------

GOOD_WAV = wav_b64(seconds=0.5)

# (action the app returns, finding code, words in the message, severity)
FINDING_CASES = [
    pytest.param({"type": "play_music"}, "unknown_action_type", "play_music", id="unknown-type"),
    pytest.param(
        speak("Hi", session_id=None), "missing_session_id", "session_id", id="missing-session-id"
    ),
    pytest.param(
        speak("Hi", session_id="someone-else"),
        "wrong_session_id",
        "someone-else",
        id="wrong-session-id",
    ),
    pytest.param(
        {"type": "speak", "text": "Hi", "ssml": "<speak>Hi</speak>"},
        "text_and_ssml",
        "both",
        id="text-and-ssml",
    ),
    pytest.param({"type": "speak"}, "text_and_ssml", "neither", id="neither-text-nor-ssml"),
    pytest.param(
        speak("Hi", barge_in={"strategy": "minimum_characters", "minimum_characters": 0}),
        "out_of_range",
        "minimum_characters",
        id="minimum-characters-0",
    ),
    pytest.param(
        speak("Hi", barge_in={"strategy": "minimum_characters", "minimum_characters": 101}),
        "out_of_range",
        "minimum_characters",
        id="minimum-characters-101",
    ),
    pytest.param(
        speak("Hi", barge_in={"strategy": "immediate", "allow_after_ms": -1}),
        "out_of_range",
        "allow_after_ms",
        id="allow-after-ms-negative",
    ),
    pytest.param(
        speak("Hi", barge_in={"strategy": "immediate", "allow_after_ms": 10001}),
        "out_of_range",
        "allow_after_ms",
        id="allow-after-ms-10001",
    ),
    pytest.param(
        speak("Hi", barge_in={"strategy": "interrupt"}),
        "invalid_action",
        "strategy",
        id="unknown-barge-in-strategy",
    ),
    pytest.param({**TRANSFER, "timeout": 4}, "out_of_range", "timeout", id="transfer-timeout-4"),
    pytest.param(
        {**TRANSFER, "timeout": 121}, "out_of_range", "timeout", id="transfer-timeout-121"
    ),
    pytest.param(
        {"type": "transfer", "target_phone_number": "4921100000099", "caller_id_name": "S"},
        "missing_field",
        "caller_id_number",
        id="transfer-missing-caller-id-number",
    ),
    pytest.param(
        {"type": "configure_transcription", "languages": []},
        "out_of_range",
        "languages",
        id="languages-0",
    ),
    pytest.param(
        {
            "type": "configure_transcription",
            "languages": ["de-DE", "en-US", "fr-FR", "es-ES", "it-IT"],
        },
        "out_of_range",
        "languages",
        id="languages-5",
    ),
    pytest.param(
        {"type": "configure_transcription", "provider": "WHISPER"},
        "invalid_action",
        "provider",
        id="unknown-stt-provider",
    ),
    pytest.param(
        {"type": "audio", "audio": "not base64!"}, "invalid_base64", "base64", id="audio-bad-base64"
    ),
    pytest.param(
        {"type": "mix_audio", "audio": "%%%"}, "invalid_base64", "base64", id="mix-audio-bad-base64"
    ),
    pytest.param(
        {"type": "mix_audio", "audio": GOOD_WAV, "volume": 1.5},
        "out_of_range",
        "volume",
        id="mix-audio-volume-1.5",
    ),
    pytest.param(
        {"type": "configure_voice_to_voice", "system_prompt": "Hi", "temperature": 2.5},
        "out_of_range",
        "temperature",
        id="voice-to-voice-temperature-2.5",
    ),
    pytest.param(
        {"type": "send_sms", "phone_number": "4915790000687"},
        "missing_field",
        "message",
        id="sms-missing-message",
    ),
    pytest.param(
        {"type": "transfer", "transfer_to": "+49211100200"},
        "transfer_to_alias",
        "target_phone_number",
        id="transfer-to-alias",
    ),
    pytest.param(
        {**TRANSFER, "transfer_to": "+49211100200"},
        "transfer_to_alias",
        "transfer_to",
        id="transfer-to-alias-next-to-target",
    ),
    pytest.param(speak("Hi", colour="blue"), "unknown_field", "colour", id="unknown-field"),
    pytest.param(
        speak("Hi", barge_in={"strategy": "immediate", "delay": 3}),
        "unknown_field",
        "delay",
        id="unknown-nested-field",
    ),
    pytest.param(
        speak("Hi", tts={"provider": "eleven_labs", "voice": {"name": "Rachel"}}),
        "voice_object",
        "voice",
        id="elevenlabs-voice-object",
    ),
    pytest.param(
        speak("Hi", tts={"provider": "elevenlabs", "voice": "21m00Tcm4TlvDq8ikWAM"}),
        "invalid_action",
        "provider",
        id="tts-provider-misspelt",
    ),
]

WAV_CASES = [
    pytest.param(
        {"type": "audio", "audio": wav_b64(rate=8000)}, "wav_format", "8000 Hz", id="wav-8khz"
    ),
    pytest.param(
        {"type": "audio", "audio": wav_b64(channels=2)}, "wav_format", "2 channels", id="wav-stereo"
    ),
    pytest.param(
        {"type": "audio", "audio": wav_b64(width=1)}, "wav_format", "8-bit", id="wav-8-bit"
    ),
    pytest.param(
        {"type": "mix_audio", "audio": wav_b64(rate=8000)},
        "wav_format",
        "8000 Hz",
        id="mix-audio-wav-8khz",
    ),
    pytest.param(
        {"type": "audio", "audio": base64.b64encode(b"not a wav file").decode()},
        "wav_format",
        "not a readable WAV",
        id="audio-not-a-wav",
    ),
]

VAD_CASES = [
    pytest.param(
        speak("Hi", vad={"end_of_turn_silence_ms": -5}),
        "invalid_vad",
        "end_of_turn_silence_ms",
        id="vad-negative",
    ),
    pytest.param(
        speak("Hi", vad={"end_of_turn_silence_ms": "fast"}),
        "invalid_vad",
        "end_of_turn_silence_ms",
        id="vad-not-a-number",
    ),
    pytest.param(
        {"type": "configure_transcription", "languages": ["de-DE"], "vad": "short"},
        "invalid_vad",
        "object",
        id="vad-not-an-object",
    ),
]


def _expected_payload(action: dict[str, Any]) -> dict[str, Any]:
    """What the app put on the wire: the SDK fills session_id unless the dict has one."""
    return {"session_id": SID, **action} if "session_id" not in action else dict(action)


def _same_json(payload: Any, wire: dict[str, Any]) -> bool:
    """The finding's payload is the action as sent (long audio may be abbreviated)."""
    if payload == wire:
        return True
    audio = wire.get("audio")
    return (
        isinstance(payload, dict)
        and isinstance(audio, str)
        and {k: v for k, v in payload.items() if k != "audio"}
        == {k: v for k, v in wire.items() if k != "audio"}
        and audio.startswith(str(payload["audio"]).split("...", 1)[0])
        and str(len(audio)) in payload["audio"]
    )


def _executed(call: EmulatedCall) -> bool:
    """Whether anything of the action ran: playback, a transfer, SMS, state, the end."""
    return (
        types(call) != ["session_start"]
        or call.ended
        or call.spoken != []
        or call.state != {"sms": [], "transfers": []}
    )


async def _answer_session_start_with(action: dict[str, Any]) -> tuple[EmulatedCall, bool]:
    """Run a call whose app answers session_start with ``action``; also say whether the
    action was executed (judged before the caller hangs up)."""
    app = AiFlowAssistant(on_session_start=lambda e: action)
    async with calling(app) as call:
        if not call.ended:
            await call.silence(1)
        executed = _executed(call)
    return call, executed


@pytest.mark.parametrize(("action", "code", "words"), [*FINDING_CASES, *WAV_CASES, *VAD_CASES])
async def test_finding_names_the_problem_and_carries_the_json(action, code, words):
    call, _ = await _answer_session_start_with(action)
    wire = _expected_payload(action)
    assert call.actions == [wire]
    matching = [f for f in call.findings if f.code == code]
    assert len(matching) == 1, [str(f) for f in call.findings]
    (finding,) = matching
    assert words in finding.message
    assert _same_json(finding.payload, wire)
    assert finding.event == "session_start"
    assert finding.at == 0.0
    assert finding.severity == ("warning" if code == "invalid_vad" else "error")
    entry = next(e for e in call.log if e["kind"] == "finding" and e["data"]["code"] == code)
    assert entry["t"] == 0.0


@pytest.mark.parametrize(("action", "code", "words"), [*FINDING_CASES, *WAV_CASES])
async def test_invalid_action_is_not_executed(action, code, words):
    call, executed = await _answer_session_start_with(action)
    assert any(f.code == code for f in call.findings)
    assert not executed, call.log


@pytest.mark.parametrize(("action", "code", "words"), VAD_CASES)
async def test_invalid_vad_is_only_a_warning_and_the_action_runs(action, code, words):
    call, executed = await _answer_session_start_with(action)
    assert [f.severity for f in call.findings] == ["warning"]
    assert executed
    if action["type"] == "speak":
        assert said(call) == ["Hi"]
    else:
        assert call.state["transcription"] == {"languages": ["de-DE"]}  # vad dropped


async def test_invalid_action_in_an_array_does_not_stop_the_others():
    app = AiFlowAssistant(
        on_session_start=lambda e: [speak("one"), {"type": "speak"}, speak("three")]
    )
    async with calling(app) as call:
        await call.silence(5)
        assert said(call) == ["one", "three"]
        assert [f.code for f in call.findings] == ["text_and_ssml"]
        assert call.findings[0].payload == {"type": "speak", "session_id": SID}


async def test_findings_record_the_event_being_answered_and_the_time():
    app = AiFlowAssistant(
        on_session_start=lambda e: speak("x" * 15),
        on_assistant_speech_ended=lambda e: {"type": "dance"},
        on_dtmf_received=lambda e: speak("Hi", foo=1),
    )
    async with calling(app) as call:
        await call.silence(2)
        await call.press("3")
    assert [(f.code, f.event, f.at) for f in call.findings] == [
        ("unknown_action_type", "assistant_speech_ended", 1.0),
        ("unknown_field", "dtmf_received", 2.0),
    ]
    assert "[unknown_action_type]" in str(call.findings[0])


# -- the virtual clock -------------------------------------------------------------------------


def reprompting_app() -> AiFlowAssistant:
    prompt = speak("Are you there??", user_input_timeout_seconds=3.5)  # 15 chars: 1 s

    return AiFlowAssistant(
        on_session_start=lambda e: prompt,
        on_user_input_timeout=lambda e: prompt,
        on_user_speak=lambda e: speak("Go on, I listen", user_input_timeout_seconds=3.5),
    )


async def test_ten_minute_call_with_timeouts_runs_on_the_virtual_clock():
    async with calling(reprompting_app()) as call:
        for _ in range(10):
            await call.silence(60)
        assert call.clock.now() == 600.0
        fired = times(call, "user_input_timeout")
        # every 4.5 s (1 s of prompt + 3.5 s of silence) for 600 s
        assert len(fired) == 133
        assert fired[:3] == [4.5, 9.0, 13.5]
        assert fired[-1] == 598.5
        assert not call.ended
    assert timeline(call)[-1] == (600.0, "session_end")


async def test_caller_gives_up_after_max_call_seconds():
    async with calling(reprompting_app(), max_call_seconds=600) as call:
        await call.silence(3600)
        assert call.ended
        assert call.clock.now() == 600.0
        assert "gave up" in (call.end_reason or "")
        assert len(times(call, "user_input_timeout")) == 133
    assert types(call)[-1] == "session_end"


async def _busy_script(call: EmulatedCall) -> None:
    await call.silence(20)
    await call.say("hello there", after_ms=300)
    await call.press("12")
    await call.silence(30)
    await call.say("still here")
    await call.silence(45)
    await call.hangup()


async def _run_fixed(script: Callable[[EmulatedCall], Any]) -> EmulatedCall:
    call = EmulatedCall(
        InProcessTransport(reprompting_app()),
        config(),
        clock=VirtualClock(start_epoch_ms=EPOCH_MS),
    )
    await call.start()
    try:
        await script(call)
    finally:
        await call.close()
    return call


async def test_same_script_gives_identical_logs():
    first = await _run_fixed(_busy_script)
    second = await _run_fixed(_busy_script)
    assert first.log == second.log
    assert first.events == second.events
    assert len(first.log) > 50
    assert first.events[1]["speech_started_at"] == EPOCH_MS


async def test_simulate_call_logs_match_up_to_the_epoch():
    """simulate_call starts the virtual clock at the current epoch: the logs match once
    speech_started_at is taken relative to it."""

    def relative(call: EmulatedCall) -> list[Any]:
        rows = []
        for entry in call.log:
            data = entry["data"]
            if entry["kind"] == "event" and "speech_started_at" in data:
                data = {
                    **data,
                    "speech_started_at": data["speech_started_at"] - call.clock.start_epoch_ms,
                }
            rows.append((entry["t"], entry["kind"], data))
        return rows

    logs = []
    for _ in range(2):
        async with calling(reprompting_app()) as call:
            await _busy_script(call)
        logs.append(relative(call))
    assert logs[0] == logs[1]


async def test_simulate_call_does_not_drop_options_next_to_config():
    try:
        async with simulate_call(
            AiFlowAssistant(), config=CallConfig(session_id=SID), transfer_outcome="failed"
        ) as call:
            outcome = call.config.transfer_outcome
    except (TypeError, ValueError):
        return  # refusing the mix is fine too
    assert outcome == "failed"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"type": "speak", "text": "hi", "user_input_timeout_seconds": "8"},
            "speak.user_input_timeout_seconds: expected a number, got a string '8'",
        ),
        (
            {
                "type": "speak",
                "text": "hi",
                "barge_in": {"strategy": "minimum_characters", "minimum_characters": "5"},
            },
            "speak.barge_in.minimum_characters: expected an integer, got a string '5'",
        ),
        (
            {
                "type": "transfer",
                "target_phone_number": "4921100",
                "caller_id_name": "x",
                "caller_id_number": "1",
                "timeout": True,
            },
            "transfer.timeout: expected an integer, got a boolean True",
        ),
    ],
)
def test_a_wrong_json_type_is_a_finding_not_coerced(fields: dict[str, Any], message: str):
    valid, findings = check_actions([{"session_id": "s", **fields}], "s")
    assert valid == []  # not run with a coerced value
    assert [(f.code, f.message) for f in findings] == [("wrong_type", message)]


def test_well_typed_numbers_pass_the_strict_check():
    items = [
        {"type": "speak", "session_id": "s", "text": "hi", "user_input_timeout_seconds": 8},
        {"type": "speak", "session_id": "s", "text": "hi", "user_input_timeout_seconds": 2.5},
    ]
    valid, findings = check_actions(items, "s")
    assert findings == []
    assert valid == items
