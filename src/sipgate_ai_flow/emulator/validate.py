"""Strict checks of everything an app sends back, reported as findings with the offending JSON.

The emulator is stricter than the SDK's models on purpose: it also checks the WAV format of
audio, flags the outdated ``transfer_to`` field and object-form ElevenLabs voices, and checks
``session_id`` against the call. Invalid ``vad`` values are only a warning, because the service
ignores them silently and runs the rest of the action.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import wave
from dataclasses import dataclass, field
from typing import Any

from ..actions import ACTION_TYPES
from ..codec import parse_action
from ..errors import InvalidActionError

__all__ = ["Finding", "check_actions", "decode_frame", "parse_reply", "wav_info"]

KNOWN_TYPES = ACTION_TYPES
"""The action types the emulator knows: the SDK's own list."""


@dataclass
class Finding:
    """Something the app sent that the real service would reject or misread."""

    code: str
    """Stable identifier, e.g. ``unknown_action_type``, ``text_and_ssml``, ``slow_reply``."""
    message: str
    """What is wrong, and where."""
    payload: Any = None
    """The offending JSON (an action, or the reply body)."""
    event: str | None = None
    """The event type the app was answering, when known."""
    at: float = 0.0
    """Seconds since the call started (emulator clock)."""
    severity: str = "error"
    """``error`` or ``warning``."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "payload": self.payload,
            "event": self.event,
            "at": round(self.at, 3),
            "severity": self.severity,
        }

    def __str__(self) -> str:
        where = f" (answering {self.event})" if self.event else ""
        return f"[{self.code}] {self.message}{where}: {json.dumps(self.payload)[:300]}"


def parse_reply(
    status: int, body: bytes, content_type: str | None
) -> tuple[list[Any], list[Finding]]:
    """Decode an HTTP reply: 204 / empty 200 / object / array; other statuses are findings."""
    if status == 204 or (200 <= status < 300 and not body.strip()):
        return [], []
    text = body.decode("utf-8", "replace")
    if not 200 <= status < 300:
        return [], [Finding("http_status", f"the app answered HTTP {status}", text[:2000])]
    try:
        data = json.loads(body)
    except ValueError as exc:
        return [], [Finding("invalid_json", f"the reply is not JSON ({exc})", text[:2000])]
    findings = []
    if content_type is not None and "json" not in content_type:
        findings.append(
            Finding(
                "content_type",
                f"the reply is JSON but its Content-Type is {content_type!r}",
                None,
                severity="warning",
            )
        )
    return _as_list(data, findings), findings


def decode_frame(text: str | bytes) -> tuple[list[Any], list[Finding]]:
    """Decode one WebSocket frame from the app: an action object or an array."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return [], [Finding("invalid_json", f"a frame is not JSON ({exc})", str(text)[:2000])]
    findings: list[Finding] = []
    return _as_list(data, findings), findings


def _as_list(data: Any, findings: list[Finding]) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return [data]
    findings.append(
        Finding("not_an_action", "the reply must be an action object or an array of them", data)
    )
    return []


def check_actions(items: list[Any], session_id: str) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Validate raw actions; return the ones the service would execute, and the findings."""
    valid: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for item in items:
        ok, item_findings = _check_one(item, session_id)
        findings.extend(item_findings)
        if ok is not None:
            valid.append(ok)
    return valid, findings


def _check_one(item: Any, session_id: str) -> tuple[dict[str, Any] | None, list[Finding]]:
    if not isinstance(item, dict):
        return None, [Finding("not_an_action", "an action must be a JSON object", item)]
    findings: list[Finding] = []
    kind = item.get("type")
    if kind not in KNOWN_TYPES:
        return None, [
            Finding(
                "unknown_action_type",
                f"unknown action type {kind!r}; known: {', '.join(sorted(KNOWN_TYPES))}",
                item,
            )
        ]
    sid = item.get("session_id")
    if sid is None:
        findings.append(Finding("missing_session_id", f"{kind}: session_id is missing", item))
    elif sid != session_id:
        findings.append(
            Finding(
                "wrong_session_id",
                f"{kind}: session_id {sid!r} is not this call's {session_id!r}",
                item,
            )
        )
    if kind == "transfer" and "transfer_to" in item:
        findings.append(
            Finding(
                "transfer_to_alias",
                "transfer: 'transfer_to' is outdated; send target_phone_number, "
                "caller_id_name and caller_id_number",
                item,
            )
        )
    voice = (item.get("tts") or {}).get("voice") if isinstance(item.get("tts"), dict) else None
    if isinstance(voice, dict):
        findings.append(
            Finding(
                "voice_object",
                f"{kind}.tts.voice: send the voice id as a string (the object form is outdated)",
                item,
            )
        )
    lenient = {k: v for k, v in item.items() if k != "vad"}
    if "vad" in item:
        vad_problem = _vad_problem(item["vad"])
        if vad_problem:
            findings.append(
                Finding(
                    "invalid_vad",
                    f"{kind}.vad: {vad_problem}; the service ignores it",
                    item,
                    severity="warning",
                )
            )
        else:
            lenient["vad"] = item["vad"]
    to_validate = {**lenient, "session_id": session_id}
    to_validate.pop("transfer_to", None)
    typed = _type_findings(kind, to_validate, item)
    if typed is not None:  # not valid as sent: say why, in the lenient models' words too
        findings.extend(typed)
        mistyped = tuple(f"{f.message.split(':', 1)[0]}:" for f in typed)
        try:
            parse_action(to_validate)
        except InvalidActionError as exc:
            known = {f.message for f in findings}
            for detail in exc.details:
                if "transfer_to" in detail or ("tts.voice" in detail and isinstance(voice, dict)):
                    continue
                if detail.startswith(mistyped):
                    continue  # the wrong type says it better than what coercion made of it
                code = _code_for(detail)
                if detail not in known:
                    findings.append(Finding(code, detail, item))
        if any(f.severity == "error" for f in findings):
            return None, findings
    if kind in ("audio", "mix_audio") and isinstance(item.get("audio"), str):
        problem = _wav_problem(item["audio"])
        if problem:
            findings.append(Finding("wav_format", f"{kind}.audio: {problem}", _short(item)))
    if any(f.severity == "error" for f in findings):
        return None, findings  # the service would reject it; warnings (vad) still run
    return dict(lenient), findings


_JSON_TYPES = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "int_from_float": "an integer",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else f"an {type(value).__name__}"


def _type_findings(kind: str, data: dict[str, Any], item: Any) -> list[Finding] | None:
    """``None`` when ``data`` is valid exactly as sent; else the wrong JSON types in it. The
    service reads types strictly: ``"8"`` or ``true`` where a number belongs is not coerced
    (the SDK's models would coerce it, so they are asked in strict mode here)."""
    try:
        parse_action(json.dumps(data), strict=True)
    except InvalidActionError as exc:
        found = []
        for error in exc.errors:
            expected = _JSON_TYPES.get(error["type"])
            if expected is None:
                continue  # not a type problem: the lenient check has reported it
            path = [str(part) for part in error["loc"][1:]]  # the first part is the tag
            value: Any = data
            for part in path:
                if isinstance(value, list) and part.isdigit() and int(part) < len(value):
                    value = value[int(part)]
                elif isinstance(value, dict) and part in value:
                    value = value[part]
                # else: a union branch name in the location, not a key
            where = ".".join([kind, *path])
            found.append(
                Finding(
                    "wrong_type",
                    f"{where}: expected {expected}, got {_json_type(value)} {value!r}",
                    item,
                )
            )
        return found
    except (TypeError, ValueError):  # not JSON-serialisable: the lenient check says why
        return []
    return None


def _code_for(detail: str) -> str:
    if "Extra inputs are not permitted" in detail:
        return "unknown_field"
    if "exactly one of 'text' or 'ssml'" in detail:
        return "text_and_ssml"
    if "base64" in detail:
        return "invalid_base64"
    if "Field required" in detail:
        return "missing_field"
    if (
        "greater than" in detail
        or "less than" in detail
        or "at least" in detail
        or "at most" in detail
    ):
        return "out_of_range"
    return "invalid_action"


def _vad_problem(vad: Any) -> str | None:
    if not isinstance(vad, dict):
        return "must be an object"
    value = vad.get("end_of_turn_silence_ms")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        return f"end_of_turn_silence_ms must be a positive integer, got {value!r}"
    return None


def wav_info(b64: str) -> tuple[int, int, int, float] | None:
    """``(sample_rate, channels, sample_width_bytes, seconds)`` of a base64 WAV, or None."""
    try:
        data = base64.b64decode(b64, validate=True)
        with wave.open(io.BytesIO(data)) as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            seconds = wav.getnframes() / rate if rate else 0.0
    except (binascii.Error, ValueError, wave.Error, EOFError):
        return None
    return rate, channels, width, seconds


def _wav_problem(b64: str) -> str | None:
    info = wav_info(b64)
    if info is None:
        return "not a readable WAV file"
    rate, channels, width, _ = info
    problems = []
    if rate != 16000:
        problems.append(f"{rate} Hz")
    if channels != 1:
        problems.append(f"{channels} channels")
    if width != 2:
        problems.append(f"{width * 8}-bit")
    if problems:
        return f"must be 16 kHz mono 16-bit PCM WAV, got {', '.join(problems)}"
    return None


def _short(item: dict[str, Any]) -> dict[str, Any]:
    audio = item.get("audio")
    if isinstance(audio, str) and len(audio) > 80:
        return {**item, "audio": audio[:60] + f"...({len(audio)} chars)"}
    return item
