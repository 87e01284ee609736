"""Turning pydantic's ``ValidationError`` into our one-line-per-problem details."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_FRIENDLY = {
    "union_tag_not_found": "Field required (every payload needs a 'type' string)",
    "model_attributes_type": "Input should be a JSON object",
    "model_type": "Input should be a JSON object",
    "dict_type": "Input should be a JSON object",
}


def problems(exc: ValidationError, prefix: str = "") -> tuple[list[str], list[dict[str, Any]]]:
    """Return ``(details, errors)`` for every problem in ``exc``."""
    details: list[str] = []
    errors: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False):
        # A location may be a key the sender made up; keep each detail on one line.
        loc = [part if part.isprintable() else repr(part) for part in map(str, err["loc"])]
        kind = err["type"]
        msg = _FRIENDLY.get(kind, err["msg"])
        if kind == "value_error":  # our own validators: their message is the whole story
            msg = msg.removeprefix("Value error, ")
        elif kind == "union_tag_not_found":
            loc.append("type")
        elif kind == "union_tag_invalid":
            loc.append("type")
            expected = err.get("ctx", {}).get("expected_tags", "")
            msg = f"unknown type {err['ctx']['tag']!r} (expected one of {expected})"
        elif kind == "json_invalid" and err.get("input") in (b"", ""):
            msg = "empty body (expected a JSON object)"
        where = ".".join([prefix, *loc] if prefix else loc) or "(root)"
        details.append(f"{where}: {msg}")
        errors.append({"loc": tuple(loc), "msg": msg, "type": err["type"]})
    return details, errors
