"""Base classes shared by every protocol model, and ``SessionInfo``.

Events arrive from the service and keep any field they carry (``extra="allow"``), so fields the
service adds later stay reachable. Actions leave this process and reject unknown fields
(``extra="forbid"``), so a typo fails where it is made instead of on a live call.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["AiFlowModel", "SessionInfo"]


class AiFlowModel(BaseModel):
    """Base of every AI Flow model: immutable, documented fields."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)


class SessionInfo(AiFlowModel):
    """The ``session`` object carried by every event (protocol §2).

    Only ``id`` is required; the service normally sends all fields. Phone numbers are kept as
    sent: E.164 with or without the leading ``+``. Unknown fields are kept.

    Example:
        >>> SessionInfo(id="550e8400-e29b-41d4-a716-446655440000").direction is None
        True
    """

    model_config = ConfigDict(extra="allow")

    id: str
    """Session id (a UUID); every action for this call carries it as ``session_id``."""
    account_id: str | None = None
    """sipgate account id."""
    phone_number: str | None = None
    """The AI Flow's phone number for this session."""
    direction: str | None = None
    """``"inbound"`` or ``"outbound"`` (``Direction``); kept as sent, so new values never fail."""
    from_phone_number: str | None = None
    """The caller (for outbound calls: the AI Flow's number)."""
    to_phone_number: str | None = None
    """The callee."""
