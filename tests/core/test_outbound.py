"""Outbound calls: ``AiFlowAssistant.call`` against a mocked transport and a real local server."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest

from sipgate_ai_flow import AiFlowAssistant, ConfigurationError, OutboundCallError
from sipgate_ai_flow.outbound import OutboundClient

TOKEN = "sgt-7f3c9e1d-SECRET-4b2a"
CALL = {"ai_flow_id": "flow-1", "billing_device": "e2", "to_phone_number": "4915790000687"}

Responder = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records each request and answers with ``respond``."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)


@pytest.fixture
async def http_clients() -> Any:
    """Make ``httpx.AsyncClient``s over a MockTransport; all are closed after the test."""
    clients: list[httpx.AsyncClient] = []

    def make(recorder: Recorder) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def _reply(status: int, body: Any = None, text: str | None = None) -> Responder:
    def respond(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text)
        if body is not None:
            return httpx.Response(status, json=body)
        return httpx.Response(status)

    return respond


# -- request and success ---------------------------------------------------------------------


async def test_call_posts_bearer_token_and_json_body(http_clients):
    recorder = Recorder(_reply(201, {"callId": "c-1", "status": "initiated"}))
    client = http_clients(recorder)
    assistant = AiFlowAssistant(token=TOKEN, http_client=client)

    result = await assistant.call(
        ai_flow_id="flow/1 ä", billing_device="e2", to_phone_number="+4915790000687"
    )

    assert result == {"callId": "c-1", "status": "initiated"}
    assert len(recorder.requests) == 1
    request = recorder.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.sipgate.com/v3/ai-flows/flow%2F1%20%C3%A4/call"
    assert request.url.raw_path == b"/v3/ai-flows/flow%2F1%20%C3%A4/call"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "billingDevice": "e2",
        "toPhoneNumber": "+4915790000687",
    }
    await assistant.aclose()
    assert not client.is_closed, "a client passed in belongs to the caller"


async def test_base_url_is_used_without_double_slash(http_clients):
    recorder = Recorder(_reply(201))
    assistant = AiFlowAssistant(
        token=TOKEN, base_url="http://api.test/sipgate/", http_client=http_clients(recorder)
    )
    await assistant.call(**CALL)
    assert str(recorder.requests[0].url) == "http://api.test/sipgate/v3/ai-flows/flow-1/call"


@pytest.mark.parametrize(
    ("respond", "expected"),
    [
        pytest.param(_reply(201), None, id="201-empty"),
        pytest.param(_reply(201, {"id": "c-9"}), {"id": "c-9"}, id="201-json-object"),
        pytest.param(_reply(200, {"id": "c-9"}), {"id": "c-9"}, id="200-json-object"),
        pytest.param(_reply(201, text="Created"), None, id="201-not-json"),
        pytest.param(_reply(201, ["c-9"]), {"body": ["c-9"]}, id="201-json-array"),
    ],
)
async def test_success_returns_json_body_or_none(http_clients, respond, expected):
    recorder = Recorder(respond)
    assistant = AiFlowAssistant(token=TOKEN, http_client=http_clients(recorder))
    assert await assistant.call(**CALL) == expected
    assert len(recorder.requests) == 1


# -- failures --------------------------------------------------------------------------------

ERROR_STATUSES = [
    pytest.param(
        400,
        '{"message":"AI Flow has no phone number"}',
        "HTTP 400: the AI Flow has no phone number configured (it is used as caller id)",
        id="400",
    ),
    pytest.param(
        401, '{"message":"Unauthorized"}', "HTTP 401: the API token was rejected", id="401"
    ),
    pytest.param(
        403,
        "Forbidden",
        "HTTP 403: the token may not place outbound calls (access is granted by sipgate support)",
        id="403",
    ),
    pytest.param(404, '{"message":"Not Found"}', "HTTP 404: the AI Flow was not found", id="404"),
    pytest.param(422, "bad phone number", "HTTP 422: request refused", id="422"),
    pytest.param(500, "Internal Server Error", "HTTP 500: sipgate API error", id="500"),
    pytest.param(503, "", "HTTP 503: sipgate API error", id="503-empty-body"),
]


@pytest.mark.parametrize(("status", "body", "reason"), ERROR_STATUSES)
async def test_http_error_raises_outbound_call_error(http_clients, status, body, reason):
    recorder = Recorder(_reply(status, text=body))
    assistant = AiFlowAssistant(token=TOKEN, http_client=http_clients(recorder))

    with pytest.raises(OutboundCallError) as info:
        await assistant.call(**CALL)

    error = info.value
    assert error.status_code == status
    assert error.body == body
    assert str(error) == f"outbound call via AI Flow 'flow-1' failed: {reason}"
    assert TOKEN not in str(error)
    assert TOKEN not in error.body


async def test_network_error_raises_outbound_call_error_without_status():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        assistant = AiFlowAssistant(token=TOKEN, http_client=client)
        with pytest.raises(OutboundCallError) as info:
            await assistant.call(**CALL)

    error = info.value
    assert error.status_code is None
    assert error.body == ""
    assert str(error) == (
        "outbound call to 4915790000687 failed: could not reach "
        "https://api.sipgate.com/v3/ai-flows/flow-1/call: "
        "ConnectError: [Errno 111] Connection refused"
    )
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert TOKEN not in str(error)


@pytest.mark.parametrize("token", [None, ""], ids=["none", "empty"])
async def test_missing_token_is_a_configuration_error(http_clients, token):
    recorder = Recorder(_reply(201))
    assistant = AiFlowAssistant(token=token, http_client=http_clients(recorder))
    with pytest.raises(ConfigurationError, match=r"outbound calls need an API token"):
        await assistant.call(**CALL)
    assert recorder.requests == []


async def test_api_key_is_the_deprecated_name_of_token(http_clients):
    recorder = Recorder(_reply(201, {"ok": True}))
    with pytest.warns(DeprecationWarning, match=r"api_key=\.\.\.\) is the old name of token"):
        assistant = AiFlowAssistant(api_key=TOKEN, http_client=http_clients(recorder))
    assert await assistant.call(**CALL) == {"ok": True}
    assert recorder.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("field", ["ai_flow_id", "billing_device", "to_phone_number"])
async def test_empty_argument_is_a_value_error(http_clients, field):
    recorder = Recorder(_reply(201))
    assistant = AiFlowAssistant(token=TOKEN, http_client=http_clients(recorder))
    with pytest.raises(ValueError, match=rf"^{field} must be a non-empty string, got ''$"):
        await assistant.call(**{**CALL, field: ""})
    assert recorder.requests == []


# -- the token stays secret ------------------------------------------------------------------


def test_token_is_not_in_reprs():
    assistant = AiFlowAssistant(token=TOKEN, on_session_start=lambda event: "Hi")
    assert repr(assistant).startswith("AiFlowAssistant(")
    assert "session_start" in repr(assistant)
    client = OutboundClient(TOKEN, "https://api.sipgate.com")
    assert repr(client) == "OutboundClient(base_url='https://api.sipgate.com')"
    for text in (repr(assistant), str(assistant), repr(client), str(client)):
        assert TOKEN not in text


async def test_token_is_never_logged(http_clients, caplog):
    caplog.set_level(logging.DEBUG)
    # debug=True sets the package logger to DEBUG; this restores its level after the test.
    caplog.set_level(logging.DEBUG, logger="sipgate_ai_flow")
    statuses = iter([401, 201])
    recorder = Recorder(lambda request: httpx.Response(next(statuses), json={"echo": "no"}))
    assistant = AiFlowAssistant(token=TOKEN, debug=True, http_client=http_clients(recorder))

    with pytest.raises(OutboundCallError) as info:
        await assistant.call(**CALL)
    logging.getLogger(__name__).exception("call failed", exc_info=info.value)
    assert await assistant.call(**CALL) == {"echo": "no"}

    assert len(recorder.requests) == 2
    assert "HTTP Request: POST" in caplog.text, "httpx's request log was not captured"
    assert "call failed" in caplog.text
    assert TOKEN not in caplog.text
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in repr(record.args)


# -- a real HTTP server on a local socket ----------------------------------------------------


class FakeSipgateApi(BaseHTTPRequestHandler):
    """``POST /v3/ai-flows/{id}/call`` as the sipgate API answers it (protocol §11)."""

    flows: ClassVar[dict[str, str | None]] = {
        "flow-ok": "+4921155660",
        "flow-without-number": None,
    }
    seen: ClassVar[list[tuple[str, str | None, dict[str, Any]]]] = []
    path_pattern = re.compile(r"^/v3/ai-flows/([^/]+)/call$")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        body: dict[str, Any] = json.loads(raw) if raw else {}
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        match = self.path_pattern.match(self.path)
        if match is None:
            self._send(404, {"message": "no such endpoint"})
        elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"message": "Unauthorized"})
        elif match[1] not in self.flows:
            self._send(404, {"message": f"AI Flow {match[1]} not found"})
        elif self.flows[match[1]] is None:
            self._send(400, {"message": "AI Flow has no phone number"})
        elif self.headers.get("Content-Type") != "application/json" or set(body) != {
            "billingDevice",
            "toPhoneNumber",
        }:
            self._send(422, {"message": "billingDevice and toPhoneNumber required"})
        else:
            self._send(
                201,
                {
                    "callId": "call-123",
                    "from": self.flows[match[1]],
                    "to": body["toPhoneNumber"],
                    "billingDevice": body["billingDevice"],
                },
            )

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def sipgate_api() -> Iterator[str]:
    FakeSipgateApi.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSipgateApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_call_over_a_real_socket(sipgate_api, caplog):
    caplog.set_level(logging.DEBUG)
    assistant = AiFlowAssistant(token=TOKEN, base_url=sipgate_api)
    intruder = AiFlowAssistant(token="wrong-token", base_url=sipgate_api)
    try:
        with pytest.raises(OutboundCallError) as unauthorized:
            await intruder.call(**{**CALL, "ai_flow_id": "flow-ok"})
        with pytest.raises(OutboundCallError) as unknown:
            await assistant.call(**{**CALL, "ai_flow_id": "flow-missing"})
        with pytest.raises(OutboundCallError) as no_number:
            await assistant.call(**{**CALL, "ai_flow_id": "flow-without-number"})
        created = await assistant.call(**{**CALL, "ai_flow_id": "flow-ok"})
    finally:
        await assistant.aclose()
        await intruder.aclose()

    assert unauthorized.value.status_code == 401
    assert json.loads(unauthorized.value.body) == {"message": "Unauthorized"}
    assert "the API token was rejected" in str(unauthorized.value)
    assert unknown.value.status_code == 404
    assert json.loads(unknown.value.body) == {"message": "AI Flow flow-missing not found"}
    assert "the AI Flow was not found" in str(unknown.value)
    assert no_number.value.status_code == 400
    assert "has no phone number configured" in str(no_number.value)
    assert created == {
        "callId": "call-123",
        "from": "+4921155660",
        "to": "4915790000687",
        "billingDevice": "e2",
    }

    assert [(path, auth) for path, auth, _ in FakeSipgateApi.seen] == [
        ("/v3/ai-flows/flow-ok/call", "Bearer wrong-token"),
        ("/v3/ai-flows/flow-missing/call", f"Bearer {TOKEN}"),
        ("/v3/ai-flows/flow-without-number/call", f"Bearer {TOKEN}"),
        ("/v3/ai-flows/flow-ok/call", f"Bearer {TOKEN}"),
    ]
    assert all(
        body == {"billingDevice": "e2", "toPhoneNumber": "4915790000687"}
        for _, _, body in FakeSipgateApi.seen
    )
    assert "HTTP Request: POST" in caplog.text
    assert TOKEN not in caplog.text


# -- regressions: token hygiene and odd response bodies -------------------------------------


async def test_token_with_trailing_newline_is_not_echoed(sipgate_api, caplog):
    caplog.set_level(logging.DEBUG)
    message = ""
    assistant = AiFlowAssistant(token=TOKEN + "\n", base_url=sipgate_api)
    try:
        await assistant.call(**{**CALL, "ai_flow_id": "flow-ok"})
    except (ConfigurationError, OutboundCallError) as exc:
        message = str(exc)
    finally:
        await assistant.aclose()
    assert TOKEN not in message
    assert TOKEN not in caplog.text


def test_non_ascii_token_raises_an_sdk_error():
    with pytest.raises(ConfigurationError, match="the token itself is not shown") as info:
        AiFlowAssistant(token="tökén")
    assert "tökén" not in str(info.value)


async def test_success_with_undecodable_body_returns_none(http_clients):
    recorder = Recorder(lambda request: httpx.Response(201, content=b"\x80\x81 not utf-8"))
    assistant = AiFlowAssistant(token=TOKEN, http_client=http_clients(recorder))
    assert await assistant.call(**CALL) is None
