"""Parsing events and actions from the wire, and dumping them back.

Example:
    >>> from sipgate_ai_flow import SpeakAction, dump_actions, parse_event
    >>> event = parse_event(b'{"type":"session_start","session":{"id":"s1"}}')
    >>> dump_actions([SpeakAction(session_id=event.session.id, text="Hi")])
    b'{"type":"speak","session_id":"s1","text":"Hi"}'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from ._validation import problems
from .actions import AiFlowAction, BaseAction
from .errors import InvalidActionError, InvalidEventError
from .events import AiFlowEvent, BaseEvent, KnownEvent, UnknownEvent

__all__ = [
    "ActionLike",
    "dump_action",
    "dump_actions",
    "dump_event",
    "parse_action",
    "parse_actions",
    "parse_event",
]

ActionLike = BaseAction | Mapping[str, Any]
"""An action model, or a plain mapping sent as it is (the escape hatch)."""

# Built once: a plain tag discriminator keeps validation in pydantic-core; unknown tags are
# caught after the fact so the common path pays nothing for forward compatibility.
_KNOWN_EVENTS: TypeAdapter[KnownEvent] = TypeAdapter(
    Annotated[KnownEvent, Field(discriminator="type")]
)
_ACTIONS: TypeAdapter[AiFlowAction] = TypeAdapter(
    Annotated[AiFlowAction, Field(discriminator="type")]
)
# The compiled validator itself: TypeAdapter.validate_json is a Python wrapper around it.
_validate_event_json = _KNOWN_EVENTS.validator.validate_json
_validate_event = _KNOWN_EVENTS.validator.validate_python


def parse_event(data: bytes | bytearray | str | Mapping[str, Any]) -> AiFlowEvent:
    """Parse one event from JSON (``bytes``/``str``) or a decoded ``dict``.

    Unknown event types become ``UnknownEvent``. Anything else that is wrong raises
    ``InvalidEventError`` whose ``details`` name every problem, e.g.
    ``user_speak.text: Field required``.
    """
    try:
        if isinstance(data, (bytes, bytearray, str)):
            return _validate_event_json(data)  # type: ignore[no-any-return]
        if isinstance(data, Mapping):
            return _validate_event(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        if _only_unknown_tag(exc):
            return _parse_unknown(data)
        details, errors = problems(exc)
        raise InvalidEventError(details, errors) from None
    raise InvalidEventError(
        [f"(root): expected JSON bytes, str or a dict, got {type(data).__name__}"]
    )


def _only_unknown_tag(exc: ValidationError) -> bool:
    if exc.error_count() != 1:
        return False
    return exc.errors(include_url=False)[0]["type"] == "union_tag_invalid"


def _parse_unknown(data: bytes | bytearray | str | Mapping[str, Any]) -> UnknownEvent:
    payload = json.loads(data) if isinstance(data, (bytes, bytearray, str)) else data
    try:
        return UnknownEvent.model_validate(payload)
    except ValidationError as exc:
        tag = payload.get("type")
        details, errors = problems(exc, prefix=tag if isinstance(tag, str) else "")
        raise InvalidEventError(details, errors) from None


def dump_event(event: BaseEvent) -> dict[str, Any]:
    """Return the event as a JSON-ready dict holding the fields it was built or parsed with.

    ``parse_event(payload)`` followed by ``dump_event`` gives back ``payload``.
    """
    return {"type": event.type, **event.model_dump(mode="json", exclude_unset=True)}


def parse_action(
    data: bytes | bytearray | str | Mapping[str, Any], *, strict: bool = False
) -> AiFlowAction:
    """Validate one action (JSON or dict) against the protocol; raise ``InvalidActionError``.

    ``strict`` (JSON input): no coercion, so ``"8"`` or ``true`` where a number belongs is a
    problem (``int_type``, ``float_type``...) instead of ``8`` or ``1``.
    """
    try:
        if isinstance(data, (bytes, bytearray, str)):
            return _ACTIONS.validate_json(data, strict=strict or None)
        return _ACTIONS.validate_python(data)
    except ValidationError as exc:
        details, errors = problems(exc)
        raise InvalidActionError(details, errors) from None


def parse_actions(
    data: bytes | bytearray | str | Sequence[Any] | Mapping[str, Any],
) -> list[AiFlowAction]:
    """Validate a reply body: one action object, or an array of them (``[]`` is nothing).

    Problems in an array are prefixed with the item's index, e.g. ``[1].speak.text``.
    """
    if isinstance(data, (bytes, bytearray, str)):
        if not data.strip():
            raise InvalidActionError(["(root): empty body (expected an action object or array)"])
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise InvalidActionError([f"(root): Invalid JSON: {exc}"]) from None
    if isinstance(data, Mapping):
        return [parse_action(data)]
    if isinstance(data, (str, bytes, bytearray)) or not isinstance(data, Sequence):
        raise InvalidActionError(
            [f"(root): expected an action object or an array of them, got {_kind(data)}"]
        )
    actions: list[AiFlowAction] = []
    details: list[str] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(data):
        if not isinstance(item, Mapping):
            details.append(f"[{index}]: expected an action object, got {_kind(item)}")
            errors.append(
                {"loc": (index,), "msg": "expected an action object", "type": "dict_type"}
            )
            continue
        try:
            actions.append(parse_action(item))
        except InvalidActionError as exc:
            details.extend(f"[{index}].{line}" for line in exc.details)
            errors.extend({**err, "loc": (index, *err["loc"])} for err in exc.errors)
    if details:
        raise InvalidActionError(details, errors)
    return actions


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def dump_action(action: ActionLike) -> dict[str, Any]:
    """Return one action as a JSON-ready dict (``None`` fields left out)."""
    if isinstance(action, BaseAction):
        return action.model_dump(mode="json", exclude_none=True)
    return dict(action)


def _action_json(action: ActionLike) -> bytes:
    if isinstance(action, BaseAction):
        if action.session_id is None:
            raise InvalidActionError([f"{action.type}.session_id: Field required"])
        return action.__pydantic_serializer__.to_json(action, exclude_none=True)
    try:
        return json.dumps(action, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidActionError(
            [f"{action.get('type', '(dict)')}: not JSON-serialisable: {exc}"]
        ) from None


def dump_actions(actions: Sequence[ActionLike]) -> bytes | None:
    """Serialise a reply: ``None`` for no action, an object for one, an array for several.

    This is the HTTP body rule of protocol §8 (``None`` means ``204 No Content``).
    """
    if not actions:
        return None
    if len(actions) == 1:
        return _action_json(actions[0])
    return b"[" + b",".join([_action_json(a) for a in actions]) + b"]"
