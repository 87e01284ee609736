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
    for err in exc.errors(include_url=False, include_context=False):
        # A location may be a key the sender made up; keep each detail on one line.
        loc = [part if part.isprintable() else repr(part) for part in map(str, err["loc"])]
        msg = _FRIENDLY.get(err["type"], err["msg"])
        if err["type"] == "union_tag_not_found":
            loc.append("type")
        where = ".".join([prefix, *loc] if prefix else loc) or "(root)"
        details.append(f"{where}: {msg}")
        errors.append({"loc": tuple(loc), "msg": msg, "type": err["type"]})
    return details, errors
