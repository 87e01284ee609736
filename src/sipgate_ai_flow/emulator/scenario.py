"""Conversation scenarios: a call described in YAML, and what must happen in it.

A scenario is a list of steps: the caller's part (``say``, ``press``, ``silence``,
``hangup``) and expectations about what the app sent (``expect``)::

    name: greeting and menu
    transport: http                # http | websocket | inprocess (default: from the target)
    call: {from: "+4915111111111", direction: inbound}
    steps:
      - expect: {speak: "(?i)welcome"}
      - press: "1"
      - expect: {barge_in: {}}
      - expect: {transfer: {target_phone_number: "49211100200"}}

An ``expect`` consumes the app's actions in order: the next action not yet consumed must be of
that type and have those fields; if there is none yet, the call runs on until the assistant
has finished speaking (timeouts need a ``silence`` step). A string is a regular expression
(``re.search``) or literal text; a mapping matches field by field; anything else must be
equal.
``{speak: "regex"}`` matches the text or SSML. ``{event: TYPE}`` looks forward (from the event
the last matched action answered) for an event the emulator sent; ``{nothing: {}}`` says the
app has sent nothing since the previous expectation. Every emulator finding fails the
scenario unless it sets ``allow_findings: true``.

Example:
    >>> import asyncio
    >>> from sipgate_ai_flow.demo import assistant
    >>> scenario = parse_scenario({
    ...     "name": "opening hours",
    ...     "steps": [
    ...         {"expect": {"speak": "(?i)welcome"}},
    ...         {"say": "When are you open?"},
    ...         {"expect": {"speak": "Monday to Friday"}},
    ...         {"hangup": {}},
    ...         {"expect": {"event": "session_end"}},
    ...     ],
    ... })
    >>> result = asyncio.run(run_scenario(scenario, assistant))
    >>> result.passed, result.error
    (True, None)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from .call import CallConfig, CallEndedError, EmulatedCall, RealClock, VirtualClock
from .lifecycle import CallStartError, running
from .target import Target, TargetError, resolve_target
from .transports import AppTransport
from .validate import KNOWN_TYPES

if TYPE_CHECKING:
    from ..assistant import AiFlowAssistant
    from .local import LocalServer

__all__ = [
    "Expectation",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "ScenarioRunner",
    "Step",
    "junit_xml",
    "load_scenario",
    "load_scenarios",
    "parse_scenario",
    "play",
    "run_scenario",
]

TRANSPORTS = ("http", "websocket", "inprocess")
STEP_KINDS = ("expect", "say", "press", "silence", "hangup")
_TOP_KEYS = {"name", "transport", "call", "steps", "allow_findings"}
_CALL_ALIASES = {"from": "from_number", "to": "to_number"}
_CALL_FIELDS = {f.name for f in fields(CallConfig)}
_CONTEXT_ENTRIES = 14


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the file and the step."""


@dataclass(frozen=True)
class Expectation:
    """What one ``expect`` step asks for."""

    kind: str
    """``action``, ``event`` or ``nothing``."""
    name: str = ""
    """The action or event type."""
    fields: dict[str, Any] | None = None
    """Field patterns (see ``match``); ``None`` for none."""
    text: TextPattern | None = None
    """``{speak: "regex"}``: a pattern for the text or SSML."""

    def describe(self) -> str:
        if self.kind == "nothing":
            return "no action since the previous expectation"
        what = f"a {self.name} {'event' if self.kind == 'event' else 'action'}"
        if self.text is not None:
            what += f" whose text or ssml matches {self.text.pattern!r}"
        if self.fields:
            what += f" with {_dumps(_patterns_as_json(self.fields))}"
        return what


@dataclass(frozen=True)
class Step:
    """One step of a scenario; ``number`` counts from 1."""

    number: int
    kind: str
    value: Any
    raw: Any

    def __str__(self) -> str:
        return f"step {self.number}: {_dumps(self.raw)}"


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file."""

    name: str
    steps: tuple[Step, ...]
    transport: str | None = None
    call: dict[str, Any] = field(default_factory=dict)
    """``CallConfig`` fields (``from``/``to`` already renamed)."""
    allow_findings: bool = False
    source: str = "<scenario>"

    def config(self) -> CallConfig:
        return CallConfig(**self.call)


# -- parsing ----------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read one YAML scenario file. Raises ``ScenarioError`` naming the file and the problem."""
    try:
        import yaml  # noqa: PLC0415 - the [cli] extra
    except ImportError as exc:  # pragma: no cover - installed with the cli extra
        raise ScenarioError(
            "reading scenarios needs PyYAML: pip install 'sipgate-ai-flow[cli]'"
        ) from exc
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse_scenario(data, source=str(path))


def load_scenarios(paths: Iterable[str | Path]) -> list[Scenario | ScenarioError]:
    """Load files and the ``*.yaml`` / ``*.yml`` files of directories, in order; a file that
    cannot be loaded gives its ``ScenarioError`` in its place."""
    found: list[Scenario | ScenarioError] = []
    for entry in paths:
        path = Path(entry)
        files = (
            sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
            if path.is_dir()
            else [path]
        )
        if not files:
            found.append(ScenarioError(f"{path}: no *.yaml scenario files in this directory"))
        for file in files:
            try:
                found.append(load_scenario(file))
            except ScenarioError as exc:
                found.append(exc)
    return found


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Build a ``Scenario`` from the decoded YAML (a mapping)."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping with 'name' and 'steps'")
    unknown = sorted(set(map(str, data)) - _TOP_KEYS)
    if unknown:
        raise ScenarioError(
            f"{source}: unknown key(s) {', '.join(unknown)}; a scenario has "
            f"{', '.join(sorted(_TOP_KEYS))}"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError(f"{source}: 'name' is required (a non-empty string)")
    transport = data.get("transport")
    if transport is not None and transport not in TRANSPORTS:
        raise ScenarioError(
            f"{source}: transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}"
        )
    allow = data.get("allow_findings", False)
    if not isinstance(allow, bool):
        raise ScenarioError(f"{source}: allow_findings must be true or false, got {allow!r}")
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{source}: 'steps' must be a non-empty list")
    return Scenario(
        name=name.strip(),
        steps=tuple(_parse_step(raw, n, source) for n, raw in enumerate(steps, 1)),
        transport=transport,
        call=_parse_call(data.get("call"), source),
        allow_findings=allow,
        source=source,
    )


def _parse_call(raw: Any, source: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: call: expected a mapping (from, to, direction, ...)")
    options: dict[str, Any] = {}
    for key, value in raw.items():
        name = _CALL_ALIASES.get(str(key), str(key))
        if name not in _CALL_FIELDS:
            allowed = ["from", "to", *sorted(_CALL_FIELDS - {"from_number", "to_number"})]
            raise ScenarioError(f"{source}: call.{key}: unknown option; use {', '.join(allowed)}")
        options[name] = value
    try:
        config = CallConfig(**options)
    except TypeError as exc:  # pragma: no cover - names are checked above
        raise ScenarioError(f"{source}: call: {exc}") from None
    problems = {
        "direction": config.direction in ("inbound", "outbound"),
        "transfer_outcome": config.transfer_outcome in ("answered", "failed"),
        "sms_outcome": config.sms_outcome in ("sent", "failed"),
        "from": isinstance(config.from_number, str),
        "to": isinstance(config.to_number, str),
    }
    for key, ok in problems.items():
        if not ok:
            raise ScenarioError(f"{source}: call.{key}: invalid value {raw.get(key)!r}")
    for key in ("speaking_rate", "caller_rate", "max_call_seconds"):
        value = options.get(key)
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0
        ):
            raise ScenarioError(f"{source}: call.{key}: a positive number, got {value!r}")
    return options


def _parse_step(raw: Any, number: int, source: str) -> Step:
    where = f"{source}: step {number}"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ScenarioError(
            f"{where}: a step is a mapping with exactly one of {', '.join(STEP_KINDS)}, "
            f"got {_dumps(raw)}"
        )
    ((kind, value),) = raw.items()
    if kind == "expect":
        return Step(number, kind, _parse_expect(value, where), raw)
    if kind == "say":
        if isinstance(value, str) and value.strip():
            return Step(number, kind, (value, None), raw)
        if isinstance(value, dict) and isinstance(value.get("text"), str) and value["text"]:
            extra = set(value) - {"text", "after_ms"}
            after = value.get("after_ms")
            if extra or not (
                after is None or (isinstance(after, int) and not isinstance(after, bool))
            ):
                raise ScenarioError(
                    f"{where}: say: {{text, after_ms}} with after_ms an integer, "
                    f"got {_dumps(value)}"
                )
            if after is not None and after < 0:
                raise ScenarioError(f"{where}: say.after_ms must be >= 0, got {after}")
            return Step(number, kind, (value["text"], after), raw)
        raise ScenarioError(f"{where}: say: text, or {{text: ..., after_ms: N}}")
    if kind == "press":
        keys = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(keys, str) or not keys or any(k not in "0123456789*#" for k in keys):
            raise ScenarioError(f"{where}: press: DTMF keys 0-9, * and #, got {value!r}")
        return Step(number, kind, keys, raw)
    if kind == "silence":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ScenarioError(f"{where}: silence: seconds (a number >= 0), got {value!r}")
        return Step(number, kind, float(value), raw)
    if kind == "hangup":
        if value not in (None, {}):
            raise ScenarioError(f"{where}: hangup takes no options (hangup: {{}})")
        return Step(number, kind, None, raw)
    raise ScenarioError(f"{where}: unknown step {kind!r}; steps are {', '.join(STEP_KINDS)}")


def _parse_expect(value: Any, where: str) -> Expectation:
    kinds = sorted(KNOWN_TYPES)
    if not isinstance(value, dict) or len(value) != 1:
        raise ScenarioError(
            f"{where}: expect: a mapping with one key: an action type ({', '.join(kinds)}), "
            f"event or nothing; got {_dumps(value)}"
        )
    ((name, spec),) = value.items()
    where = f"{where}: expect.{name}"
    if name == "nothing":
        if spec not in (None, {}):
            raise ScenarioError(f"{where}: takes no options (nothing: {{}})")
        return Expectation("nothing")
    if name == "event":
        if isinstance(spec, str) and spec:
            return Expectation("event", spec)
        if isinstance(spec, dict) and isinstance(spec.get("type"), str):
            rest = {k: v for k, v in spec.items() if k != "type"}
            return Expectation("event", spec["type"], _compile(rest, where) or None)
        raise ScenarioError(f"{where}: an event type, or {{type: ..., field: pattern}}")
    if name not in KNOWN_TYPES:
        raise ScenarioError(
            f"{where}: unknown action type; expect an action ({', '.join(kinds)}), event or nothing"
        )
    if spec is None or spec == {}:
        return Expectation("action", name)
    if isinstance(spec, str):
        if name != "speak":
            raise ScenarioError(
                f"{where}: a plain pattern only works for speak; give fields, "
                f'e.g. {{{name}: {{field: "pattern"}}}}'
            )
        return Expectation("action", name, None, _regex(spec, where))
    if isinstance(spec, dict):
        return Expectation("action", name, _compile(spec, where))
    raise ScenarioError(f"{where}: expected a mapping of fields, got {_dumps(spec)}")


def _compile(spec: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if isinstance(value, str):
            out[str(key)] = _regex(value, f"{where}.{key}")
        elif isinstance(value, dict):
            out[str(key)] = _compile(value, f"{where}.{key}")
        else:
            out[str(key)] = value
    return out


@dataclass(frozen=True)
class TextPattern:
    """A string in an expectation: it matches text that contains it, or in which it finds a
    match as a regular expression (``re.search``). One that is no valid regular expression
    (``+49211``) is only taken literally."""

    pattern: str
    regex: re.Pattern[str] | None

    def search(self, text: str) -> bool:
        return self.pattern in text or (self.regex is not None and bool(self.regex.search(text)))


def _regex(pattern: str, where: str) -> TextPattern:
    try:
        return TextPattern(pattern, re.compile(pattern))
    except re.error:
        return TextPattern(pattern, None)


# -- matching ---------------------------------------------------------------------------------


def match(pattern: Any, actual: Any, path: str = "") -> str | None:
    """Why ``actual`` does not match ``pattern`` (``None`` when it does)."""
    here = path or "value"
    if isinstance(pattern, TextPattern):
        if not isinstance(actual, str):
            return f"{here} is {_dumps(actual)}, expected text matching {pattern.pattern!r}"
        if not pattern.search(actual):
            return f"{here} {_dumps(actual)} does not match {pattern.pattern!r}"
        return None
    if isinstance(pattern, dict):
        if not isinstance(actual, dict):
            return f"{here} is {_dumps(actual)}, expected an object"
        for key, sub in pattern.items():
            where = f"{path}.{key}" if path else key
            if key not in actual:
                return f"{where} is missing"
            reason = match(sub, actual[key], where)
            if reason:
                return reason
        return None
    if type(pattern) is not type(actual) and not (
        isinstance(pattern, (int, float))
        and isinstance(actual, (int, float))
        and not isinstance(pattern, bool)
        and not isinstance(actual, bool)
    ):
        return f"{here} is {_dumps(actual)}, expected {_dumps(pattern)}"
    if pattern != actual:
        return f"{here} is {_dumps(actual)}, expected {_dumps(pattern)}"
    return None


def _check(expectation: Expectation, actual: Any) -> str | None:
    if not isinstance(actual, dict) or actual.get("type") != expectation.name:
        kind = actual.get("type") if isinstance(actual, dict) else None
        return f"the next action is {kind or 'not an action'}: {_dumps(actual)}"
    if expectation.text is not None:
        texts: list[str] = [v for k in ("text", "ssml") if isinstance(v := actual.get(k), str)]
        if not any(expectation.text.search(t) for t in texts):
            return f"its text {_dumps(texts[0] if texts else None)} does not match"
    if expectation.fields:
        reason = match(expectation.fields, actual)
        if reason:
            return f"{reason}: {_dumps(actual)}"
    return None


# -- running ----------------------------------------------------------------------------------


class _Failed(Exception):
    pass


class _Player:
    """Runs the steps of one scenario against a started call, keeping the cursors."""

    def __init__(
        self, call: EmulatedCall, scenario: Scenario, receive_wait: float | None = None
    ) -> None:
        self.call = call
        self.scenario = scenario
        self.receive_wait = call.transport.deadline if receive_wait is None else receive_wait
        self.acted = 0  # actions consumed
        self.seen = 0  # events looked past
        self.mark = 0  # log length at the previous expectation
        self.reported = 0  # findings already judged

    async def run(self) -> None:
        for step in self.scenario.steps:
            await self.step(step)
            self.judge_findings(step)

    async def step(self, step: Step) -> None:
        call = self.call
        try:
            if step.kind == "say":
                text, after_ms = step.value
                await call.say(text, after_ms=after_ms)
            elif step.kind == "press":
                await call.press(step.value)
            elif step.kind == "silence":
                await call.silence(step.value)
            elif step.kind == "hangup":
                await call.hangup()
            else:
                await self.expect(step, step.value)
        except CallEndedError:
            self.fail(step, f"the call had already ended ({call.end_reason}) before this step")

    async def expect(self, step: Step, expectation: Expectation) -> None:
        if expectation.kind == "nothing":
            fresh = self.call.actions[self.acted :]
            if fresh:
                self.fail(step, f"expected no action, got {len(fresh)}: {_dumps(fresh)}")
            self.mark = len(self.call.log)
            return
        found = self.find(expectation)
        if found is None and not self.call.ended:
            # Not there yet: let the assistant finish speaking (a polite caller waits), and
            # give a WebSocket app a moment to push. Timeouts need an explicit silence.
            await self.call.wait_until_quiet()
            if self.acted >= len(self.call.actions) and not self.call.ended:
                await self.call.receive(self.receive_wait)
            found = self.find(expectation)
        if found is None:
            if expectation.kind == "event":
                self.fail(step, f"expected {expectation.describe()}; the emulator sent none")
            self.fail(step, f"expected {expectation.describe()}; the app sent no further action")
        elif found is not True:
            self.fail(step, f"expected {expectation.describe()}; {found}")
        self.mark = len(self.call.log)

    def find(self, expectation: Expectation) -> str | bool | None:
        """Consume what ``expectation`` asks for: ``True`` if found, ``None`` if nothing is
        there yet, or why the next action does not match."""
        call = self.call
        if expectation.kind == "event":
            for index in range(self.seen, len(call.events)):
                event = call.events[index]
                if event.get("type") == expectation.name and (
                    not expectation.fields or match(expectation.fields, event) is None
                ):
                    self.seen = index + 1
                    return True
            return None
        if self.acted >= len(call.actions):
            return None
        reason = _check(expectation, call.actions[self.acted])
        if reason:
            return reason
        self.acted += 1
        # Events are looked for after the one this action answered, not before it.
        self.seen = max(self.seen, self.answered(self.acted))
        return True

    def answered(self, actions: int) -> int:
        """How many events had been sent when the ``actions``-th action arrived."""
        events = seen = 0
        for entry in self.call.log:
            if entry["kind"] == "event":
                events += 1
            elif entry["kind"] == "action":
                seen += 1
                if seen == actions:
                    return events
        return events

    def judge_findings(self, step: Step | None) -> None:
        new = self.call.findings[self.reported :]
        self.reported = len(self.call.findings)
        if new and not self.scenario.allow_findings:
            lines = "\n".join(f"    {f.at:7.3f}s {f}" for f in new)
            where = f"during {step}" if step else "when the call ended"
            raise _Failed(
                f"the emulator reported {len(new)} finding(s) {where} "
                f"(set allow_findings: true to accept them):\n{lines}"
            )

    def fail(self, step: Step, message: str) -> None:
        raise _Failed(f"{step}\n  {message}\n  around it:\n{self.context()}")

    def context(self) -> str:
        log = self.call.log
        start = max(0, min(self.mark, len(log)) - 3)
        entries = log[start:][-_CONTEXT_ENTRIES:]
        return "\n".join(f"    {describe_entry(e)}" for e in entries) or "    (nothing yet)"


def describe_entry(entry: dict[str, Any]) -> str:
    """One transcript entry as a line: ``0.500s -> user_speak {"text": ...}``."""
    kind, data = entry.get("kind"), entry.get("data")
    at = f"{entry.get('t', 0):7.3f}s"
    if kind == "event" and isinstance(data, dict):
        rest = {k: v for k, v in data.items() if k not in ("type", "session")}
        return f"{at} -> {data.get('type')} {_dumps(rest) if rest else ''}".rstrip()
    if kind == "action":
        if isinstance(data, dict):
            rest = {k: v for k, v in data.items() if k not in ("type", "session_id")}
            return f"{at} <- {data.get('type')} {_dumps(rest) if rest else ''}".rstrip()
        return f"{at} <- {_dumps(data)}"
    if kind == "finding" and isinstance(data, dict):
        return f"{at} !  [{data.get('code')}] {data.get('message')}"
    return f"{at} .  {data}"


async def play(
    call: EmulatedCall, scenario: Scenario, *, receive_wait: float | None = None
) -> str | None:
    """Run ``scenario``'s steps on a started ``call``; the failure message, or ``None``.

    ``receive_wait``: how long (wall clock) an ``expect`` waits for a WebSocket app to push
    an action when none is there yet; the transport's deadline by default (an app may answer
    late, after a hold message).
    """
    player = _Player(call, scenario, receive_wait)
    try:
        await player.run()
    except _Failed as exc:
        return str(exc)
    return None


@dataclass
class ScenarioResult:
    """How one scenario went."""

    scenario: Scenario
    error: str | None
    """Why it failed; ``None`` when it passed."""
    call: EmulatedCall | None = None
    seconds: float = 0.0
    """Wall-clock time the run took."""

    @property
    def passed(self) -> bool:
        return self.error is None


class ScenarioRunner:
    """Runs scenarios against one target, sharing what can be shared (a local server).

    ``target`` is a ``Target``, or what ``resolve_target`` takes (an ``AiFlowAssistant``, a
    module or file, the app's URL). A scenario that names ``http`` or ``websocket`` reaches
    an in-process assistant over a real local socket (``serve_locally``).
    With ``record`` (a directory) each call is saved as ``<scenario file>.jsonl``, naming
    ``target_name`` as its target (for ``aiflow replay``).
    """

    def __init__(
        self,
        target: Target | AiFlowAssistant | str,
        *,
        token: str | None = None,
        realtime: bool = False,
        deadline: float = 5.0,
        record: str | Path | None = None,
        target_name: str | None = None,
    ) -> None:
        self.target = target if isinstance(target, Target) else resolve_target(target)
        self.target_name = target_name or self.target.name
        self.token = token
        self.realtime = realtime
        self.deadline = deadline
        self.record = Path(record) if record is not None else None
        self._server: LocalServer | None = None
        self._server_lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> ScenarioRunner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._server = None

    async def run(self, scenario: Scenario) -> ScenarioResult:
        """Run one scenario: a fresh call, the steps, hang up, judge the findings."""
        started = time.perf_counter()
        try:
            transport = await self._transport(scenario)
        except (TargetError, OSError, RuntimeError) as exc:
            return ScenarioResult(scenario, f"cannot reach the target: {exc}")
        call = EmulatedCall(
            transport,
            scenario.config(),
            clock=RealClock() if self.realtime else VirtualClock(),
        )
        record = None if self.record is None else self.record / f"{_slug(scenario)}.jsonl"
        player = _Player(call, scenario)
        error: str | None = None
        try:
            async with running(call, record=record, target=self.target_name):
                await player.run()
            player.judge_findings(None)  # what the hang-up raised
        except CallStartError as exc:
            error = f"cannot start the call: {exc}"
        except _Failed as exc:
            error = str(exc)
        return ScenarioResult(scenario, error, call, time.perf_counter() - started)

    async def _transport(self, scenario: Scenario) -> AppTransport:
        target = self.target
        kind = target.kind_for(scenario.transport)
        if target.assistant is not None and kind != "inprocess":
            server = await self._local_server(target.assistant)
            target = resolve_target(server.url_for(kind))
        return target.transport(token=self.token, deadline=self.deadline)

    async def _local_server(self, assistant: AiFlowAssistant) -> LocalServer:
        async with self._server_lock:
            if self._server is None:
                from .local import serve_locally  # noqa: PLC0415 - needs uvicorn

                self._server = await self._stack.enter_async_context(serve_locally(assistant))
            return self._server


async def run_scenario(
    scenario: Scenario,
    target: Target | AiFlowAssistant | str,
    *,
    token: str | None = None,
    realtime: bool = False,
    deadline: float = 5.0,
    record: str | Path | None = None,
) -> ScenarioResult:
    """Run one scenario against ``target`` (see ``ScenarioRunner``)."""
    async with ScenarioRunner(
        target, token=token, realtime=realtime, deadline=deadline, record=record
    ) as runner:
        return await runner.run(scenario)


def junit_xml(results: Sequence[ScenarioResult | ScenarioError], *, suite: str = "aiflow") -> str:
    """JUnit XML for CI: one ``testcase`` per scenario (files that did not load are errors)."""
    root = ElementTree.Element("testsuites")
    failures = sum(1 for r in results if isinstance(r, ScenarioResult) and not r.passed)
    errors = sum(1 for r in results if isinstance(r, ScenarioError))
    total = sum(r.seconds for r in results if isinstance(r, ScenarioResult))
    node = ElementTree.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        time=f"{total:.3f}",
    )
    for result in results:
        if isinstance(result, ScenarioError):
            source = str(result).split(":", 1)[0]
            case = ElementTree.SubElement(node, "testcase", name=source, classname=source)
            error = ElementTree.SubElement(case, "error", message=str(result).splitlines()[0])
            error.text = str(result)
            continue
        scenario = result.scenario
        case = ElementTree.SubElement(
            node,
            "testcase",
            name=scenario.name,
            classname=scenario.source,
            time=f"{result.seconds:.3f}",
        )
        if result.error is not None:
            failure = ElementTree.SubElement(case, "failure", message=result.error.splitlines()[0])
            failure.text = result.error
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# -- helpers ----------------------------------------------------------------------------------


def _slug(scenario: Scenario) -> str:
    base = Path(scenario.source).stem if scenario.source != "<scenario>" else scenario.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-") or "scenario"


def _patterns_as_json(value: Any) -> Any:
    if isinstance(value, TextPattern):
        return value.pattern
    if isinstance(value, dict):
        return {k: _patterns_as_json(v) for k, v in value.items()}
    return value


def _dumps(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 300 else text[:297] + "..."
