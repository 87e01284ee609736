"""Placing outbound calls through the sipgate REST API (protocol §11).

``POST {base_url}/v3/ai-flows/{ai_flow_id}/call`` with a Bearer token. When the recipient
answers, the call reaches the AI Flow's webhook as ``session_start`` with
``direction: "outbound"``. Use it through ``AiFlowAssistant.call``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ._version import __version__
from .errors import ConfigurationError, OutboundCallError

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_BASE_URL", "OutboundClient"]

DEFAULT_BASE_URL = "https://api.sipgate.com"

_REASONS = {
    400: "the AI Flow has no phone number configured (it is used as caller id)",
    401: "the API token was rejected",
    403: "the token may not place outbound calls (access is granted by sipgate support)",
    404: "the AI Flow was not found",
}


class OutboundClient:
    """A small async client for the outbound-call endpoint; holds one ``httpx.AsyncClient``."""

    def __init__(
        self,
        token: str | None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._token = _clean_token(token)
        self.base_url = base_url.rstrip("/")
        self._client = http_client
        self._own_client = http_client is None
        self._timeout = timeout

    def __repr__(self) -> str:  # never show the token
        return f"OutboundClient(base_url={self.base_url!r})"

    async def call(
        self, *, ai_flow_id: str, billing_device: str, to_phone_number: str
    ) -> dict[str, Any] | None:
        """Start an outbound call; return the response's JSON body, if it has one.

        Raises ``OutboundCallError`` (with ``status_code`` and ``body``) on any failure.
        """
        if not self._token:
            raise ConfigurationError(
                "outbound calls need an API token: AiFlowAssistant(token=...) "
                "(a sipgate personal access token with the outbound-call scope)"
            )
        for name, value in (
            ("ai_flow_id", ai_flow_id),
            ("billing_device", billing_device),
            ("to_phone_number", to_phone_number),
        ):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        import httpx  # noqa: PLC0415 - only outbound calls need it; keeps the core import light

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        url = f"{self.base_url}/v3/ai-flows/{quote(ai_flow_id, safe='')}/call"
        try:
            response = await self._client.post(
                url,
                json={"billingDevice": billing_device, "toPhoneNumber": to_phone_number},
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "User-Agent": f"sipgate-ai-flow-python/{__version__}",
                },
            )
        except httpx.HTTPError as exc:
            raise OutboundCallError(
                f"outbound call to {to_phone_number} failed: could not reach {url}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if response.is_success:
            return _json_or_none(response)
        reason = _REASONS.get(response.status_code)
        if reason is None:
            reason = "sipgate API error" if response.status_code >= 500 else "request refused"
        raise OutboundCallError(
            f"outbound call via AI Flow {ai_flow_id!r} failed: HTTP {response.status_code}: "
            f"{reason}",
            status_code=response.status_code,
            body=response.text,
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None


def _clean_token(token: str | None) -> str | None:
    # Tokens read from files often end in a newline; anything else unprintable would only
    # fail later inside the HTTP stack, with the token in the error text.
    if token is None:
        return None
    token = token.strip()
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigurationError(
            "the API token contains spaces, control or non-ASCII characters; "
            "check how it was read (the token itself is not shown)"
        )
    return token or None


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    if not response.content:
        return None
    try:
        body = response.json()
    except ValueError:  # not JSON, or not even UTF-8
        return None
    return body if isinstance(body, dict) else {"body": body}
