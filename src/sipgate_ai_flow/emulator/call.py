"""One emulated phone call: the AI Flow service's behaviour as a state machine (protocol §3-§9).

The call sends events to the app through a transport, executes what comes back, and plays the
part of the service: playback with ``assistant_speak`` / ``assistant_speech_ended``, a queue
for speech that arrives while speaking, barge-in judged by the playing action's config,
``user_input_timeout`` after silence, transfers with a scripted outcome, SMS, and
``session_end`` last. Time comes from a clock: a virtual one makes a ten-minute call with
timeouts run in milliseconds, deterministically; the real one paces the call in wall time.
The call reads what its transport can do from the transport's flags, and times every reply
itself (``latencies``), the same way on every transport.

Example:
    >>> import asyncio
    >>> from sipgate_ai_flow.demo import assistant
    >>> from sipgate_ai_flow.emulator import EmulatedCall, InProcessTransport
    >>> async def main():
    ...     call = EmulatedCall(InProcessTransport(assistant))
    ...     await call.start()
    ...     await call.say("When are you open?")
    ...     await call.hangup()
    ...     return call.spoken[-1]
    >>> asyncio.run(main())
    'We are open Monday to Friday, 9 to 5. Anything else?'
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..events import NO_REPLY_EVENTS
from .transports import AppTransport, Exchange
from .validate import Finding, check_actions, wav_info

__all__ = ["CallConfig", "CallEndedError", "EmulatedCall", "RealClock", "VirtualClock"]

DTMF_KEYS = frozenset("0123456789*#")
UNREACHABLE = frozenset({"no_reply", "connection_closed"})
"""Finding codes that mean the app was not reached at all."""
ANSWER_DUE = frozenset({"session_start", "user_speak", "dtmf_received", "user_input_timeout"})
"""Events after which the caller waits for the assistant. On a transport without paired
replies (WebSocket) the call waits up to the deadline for the app's first frame after one of
these before it goes on (and before virtual time moves); after any other event only for the
transport's short collection window. An app that answers in milliseconds costs nothing; one
that never answers a ``user_speak`` costs the deadline each time, as the caller would hear."""
DEFAULT_BARGE_IN: dict[str, Any] = {"strategy": "minimum_characters", "minimum_characters": 3}


class CallEndedError(RuntimeError):
    """The caller tried to act on a call that has ended."""


class VirtualClock:
    """Time that moves only when the call advances it: deterministic and instant."""

    virtual = True

    def __init__(self, start_epoch_ms: int | None = None) -> None:
        self._now = 0.0
        self.start_epoch_ms = int(time.time() * 1000) if start_epoch_ms is None else start_epoch_ms

    def now(self) -> float:
        """Seconds since the call started."""
        return self._now

    def set(self, value: float) -> None:
        self._now = max(self._now, value)

    def epoch_ms(self, at: float) -> int:
        return self.start_epoch_ms + round(at * 1000)


class RealClock:
    """Wall-clock time, for live use (``aiflow call``, ``aiflow emulate``)."""

    virtual = False

    def __init__(self) -> None:
        self._start = time.monotonic()
        self.start_epoch_ms = int(time.time() * 1000)

    def now(self) -> float:
        return time.monotonic() - self._start

    def set(self, value: float) -> None:  # real time cannot be set
        pass

    def epoch_ms(self, at: float) -> int:
        return self.start_epoch_ms + round(at * 1000)


@dataclass
class CallConfig:
    """How the emulated service and caller behave."""

    from_number: str = "+4915111111111"
    """The caller (for outbound calls: the AI Flow's number)."""
    to_number: str = "+4921100000000"
    """The callee (for inbound calls: the AI Flow's number)."""
    direction: Literal["inbound", "outbound"] = "inbound"
    account_id: str = "emulator-account"
    session_id: str | None = None
    """Fixed session id; a random UUID by default."""
    speaking_rate: float = 15.0
    """Characters per second of the assistant's speech (duration of ``speak``)."""
    caller_rate: float = 15.0
    """Characters per second the caller speaks (timing of barge-in and of ``user_speak``)."""
    end_of_turn_ms: int = 500
    """Silence after the caller's words before ``user_speak`` (overridden by ``vad``)."""
    transfer_outcome: Literal["answered", "failed"] = "answered"
    """What a transfer does: connect (the call leaves the app) or fail (busy / no answer)."""
    sms_outcome: Literal["sent", "failed"] = "sent"
    """``failed`` answers every ``send_sms`` with an ``sms_failed`` event."""
    session_end_after_transfer: bool = False
    """Send ``session_end`` after a successful transfer (the docs say no further events)."""
    max_call_seconds: float = 3600.0
    """The caller hangs up after this long (guards against endless loops)."""

    def session(self, session_id: str) -> dict[str, Any]:
        # phone_number: the AI Flow's number inbound, the dialled recipient outbound (protocol
        # §2, §11); both are to_phone_number.
        return {
            "id": session_id,
            "account_id": self.account_id,
            "phone_number": self.to_number,
            "direction": self.direction,
            "from_phone_number": self.from_number,
            "to_phone_number": self.to_number,
        }


@dataclass
class _Playback:
    action: dict[str, Any]
    duration: float
    started: float = 0.0
    ends: float = 0.0
    timer: _Timer | None = None

    @property
    def barge_in(self) -> dict[str, Any]:
        config = self.action.get("barge_in")
        return config if isinstance(config, dict) else DEFAULT_BARGE_IN

    @property
    def timeout(self) -> float | None:
        value = self.action.get("user_input_timeout_seconds")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None


@dataclass(order=True)
class _Timer:
    at: float
    seq: int
    name: str = field(compare=False)
    fire: Callable[[], Awaitable[None]] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class EmulatedCall:
    """One call against an app, driven step by step (``say``, ``press``, ``silence``...).

    Everything is recorded: ``events`` sent, ``actions`` received, ``spoken`` texts,
    ``findings``, ``log`` (a timeline), ``state`` (transfer, SMS, mix audio, transcription and
    voice-to-voice settings the app asked for) and ``latencies`` (wall clock, per answered
    event: the reply's round trip, or on a transport without paired replies the time to the
    app's first frame after the event; a frame later than the deadline there may be a push
    of the app's own, so it is counted in ``late`` instead).
    """

    def __init__(
        self,
        transport: AppTransport,
        config: CallConfig | None = None,
        *,
        clock: VirtualClock | RealClock | None = None,
    ) -> None:
        self.transport = transport
        self.config = config or CallConfig()
        self.clock = clock or VirtualClock()
        self.session_id = self.config.session_id or str(uuid.uuid4())
        self.session = self.config.session(self.session_id)
        self.events: list[dict[str, Any]] = []
        self.actions: list[Any] = []
        self.spoken: list[str] = []
        self.findings: list[Finding] = []
        self.log: list[dict[str, Any]] = []
        self.latencies: list[tuple[str, float]] = []
        self.late: list[str] = []
        """Events whose first frame came after the deadline (transports without paired
        replies only: neither a latency nor a finding)."""
        self.on_reply: Callable[[str, float], None] | None = None
        """Called with an event's type and its latency whenever one is measured."""
        self.state: dict[str, Any] = {"sms": [], "transfers": []}
        self.ended = False
        self.end_reason: str | None = None
        self.playing: _Playback | None = None
        self._queue: deque[_Playback] = deque()
        self._holding = False
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._timeout_timer: _Timer | None = None
        self._end_of_turn_ms = self.config.end_of_turn_ms
        self._caller_until = 0.0
        self._later: list[tuple[str, dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()
        self._started = False
        self._awaiting: tuple[str, float] | None = None
        self._hangup_mark: int | None = None
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        """Called with each new ``log`` entry (for live displays)."""

    # -- the caller's side --------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, and send nothing yet (``aiflow replay`` sends recorded events itself)."""
        if self._started:
            return
        self._started = True
        await self.transport.open(self.session_id)

    async def start(self) -> None:
        """Connect and send ``session_start`` (the call is answered)."""
        if self._started:
            return
        await self.open()
        await self._send("session_start")

    @property
    def unreachable(self) -> Finding | None:
        """Why the app could not be reached, when ``session_start`` got nothing but a
        ``no_reply`` or ``connection_closed`` finding; ``None`` otherwise."""
        if len(self.events) != 1 or self.actions:
            return None
        return next((f for f in self.findings if f.code in UNREACHABLE), None)

    async def say(self, text: str, *, after_ms: int | None = None) -> None:
        """The caller speaks ``text``.

        Without ``after_ms`` the caller is polite: they wait until the assistant has finished
        speaking. With ``after_ms`` they start talking that many ms into the current playback,
        and the playing action's barge-in config decides whether that interrupts.
        """
        async with self._step():
            if not text:
                raise ValueError("say() needs some text")
            if after_ms is None:
                await self._until_quiet()
            elif self.playing is not None:
                await self._advance_to(self.playing.started + after_ms / 1000)
            if self.ended:
                return
            onset = self.clock.now()
            self._cancel_timeout()
            if self.transport.sends_speech_started:
                await self._send("user_speech_started")
            spoken_until = onset + len(text) / self.config.caller_rate
            turn_end = spoken_until + self._end_of_turn_ms / 1000
            self._caller_until = turn_end
            item = self.playing
            if item is not None:
                cut_at = self._interrupt_time(item, text, onset, spoken_until)
                if cut_at is not None and cut_at < item.ends:
                    await self._advance_to(cut_at)
                    if self.playing is item:
                        self._note(f"caller barged in at {cut_at - item.started:.2f} s")
                        self._stop_playback()
                    await self._advance_to(turn_end)
                    await self._user_speak(text, barged_in=True)
                    return
            await self._advance_to(turn_end)
            await self._until_quiet()
            await self._user_speak(text, barged_in=False)

    async def press(self, keys: str) -> None:
        """The caller presses keys (``"1"``, ``"12#"``): one ``dtmf_received`` per key."""
        async with self._step():
            bad = [k for k in keys if k not in DTMF_KEYS]
            if bad or not keys:
                raise ValueError(f"DTMF keys are 0-9, * and #; got {keys!r}")
            for key in keys:
                if self.ended:
                    return
                self._cancel_timeout()
                await self._send("dtmf_received", digit=key)
                await self._advance_to(self.clock.now() + 0.2)

    async def silence(self, seconds: float) -> None:
        """The caller stays silent for ``seconds``; playback ends and timeouts fire."""
        async with self._step():
            await self._advance_to(self.clock.now() + seconds)

    async def wait_until_quiet(self) -> None:
        """Let time pass until the assistant has finished speaking."""
        async with self._step():
            await self._until_quiet()

    async def receive(self, timeout: float) -> None:
        """Wait up to ``timeout`` wall-clock seconds for actions the app pushes on its own
        (WebSocket only; over HTTP they ride along with the next reply) and execute them.
        The call's clock does not move."""
        async with self._step():
            if self.transport.pushes_actions:
                await self._take(await self.transport.pushed(timeout), "push")

    async def forward(self, event: dict[str, Any], *, expect: int = 0) -> list[Any]:
        """Send ``event`` exactly as given and return what the app answered, recorded but not
        executed (``aiflow replay`` compares it with a recording). ``expect``: on a transport
        that pushes, wait up to the deadline until at least this many actions have come (the
        recording's count: a late answer is still this event's). A recorded ``session_end``
        ends the call; what the recording holds after it is still sent."""
        if not self._started:
            raise RuntimeError("open() the call first")
        async with self._lock:
            event_type = str(event.get("type"))
            sent = time.perf_counter()
            exchange = await self._exchange(event)
            self._keep(exchange, event_type)
            items = list(exchange.items)
            while len(items) < expect and self.transport.pushes_actions:
                left = self.transport.deadline - (time.perf_counter() - sent)
                if left <= 0:
                    break
                pushed = await self.transport.pushed(left)
                if not pushed.items and not pushed.findings:
                    break
                self._timed(pushed)
                self._keep(pushed, event_type)
                items.extend(pushed.items)
            if event_type == "session_end":
                self._finish_call("the recorded caller hung up")
            return items

    async def hangup(self) -> None:
        """The caller hangs up: ``session_end``."""
        if not self.ended:
            async with self._lock:
                self._hangup_mark = len(self.findings)
                await self._end("caller hung up")

    @property
    def hangup_findings(self) -> list[Finding]:
        """The findings raised by the caller's hang-up (``session_end`` and what it got)."""
        return [] if self._hangup_mark is None else self.findings[self._hangup_mark :]

    def abandon(self, reason: str) -> None:
        """End the call without ``session_end``: nobody is there to hear it (the app could not
        be reached, or the tool itself was cancelled)."""
        if not self.ended:
            self._finish_call(reason)

    async def close(self) -> None:
        """Hang up if still connected, and release the transport."""
        try:
            if self._started and not self.ended:
                await self.hangup()
        finally:
            await self.transport.close()

    def release(self) -> None:
        """Empty a finished call's records and timers. A call and its timers refer to each
        other, so only the cyclic garbage collector could free it otherwise (``aiflow load``
        finishes thousands)."""
        for records in (
            self.events,
            self.actions,
            self.log,
            self.findings,
            self.latencies,
            self.late,
        ):
            records.clear()
        self.on_reply = None
        self._timers.clear()
        self._queue.clear()
        self.playing = None

    @property
    def timeout_due(self) -> float | None:
        """When (call clock) ``user_input_timeout`` fires if the caller stays silent; ``None``
        when no timeout is armed."""
        timer = self._timeout_timer
        return None if timer is None or timer.cancelled else timer.at

    def last_event(self, event_type: str) -> dict[str, Any] | None:
        """The last event of ``event_type`` sent to the app (``None`` if there was none)."""
        return next((e for e in reversed(self.events) if e["type"] == event_type), None)

    def _step(self) -> Any:
        if self.ended:
            raise CallEndedError(f"the call has ended ({self.end_reason})")
        if not self._started:
            raise RuntimeError("start() the call first")
        return self._lock

    # -- time ---------------------------------------------------------------------------------

    def _schedule(self, at: float, name: str, fire: Callable[[], Awaitable[None]]) -> _Timer:
        timer = _Timer(at, next(self._seq), name, fire)
        heapq.heappush(self._timers, timer)
        return timer

    async def _advance_to(self, target: float) -> None:
        target = min(target, self.config.max_call_seconds)
        while not self.ended:
            while self._timers and self._timers[0].cancelled:
                heapq.heappop(self._timers)
            if not self._timers or self._timers[0].at > target:
                break
            timer = heapq.heappop(self._timers)
            await self._wait(timer.at)
            if not timer.cancelled and not self.ended:
                await timer.fire()
        if not self.ended:
            await self._wait(target)
            if self.clock.now() >= self.config.max_call_seconds:
                await self._end(f"the caller gave up after {self.config.max_call_seconds:g} s")

    async def _wait(self, until: float) -> None:
        """Move time to ``until``; actions the app pushes meanwhile are executed."""
        if self.clock.virtual:
            if self.transport.pushes_actions:
                await self._take(await self.transport.pushed(0), "push")
            self.clock.set(until)
            return
        while not self.ended and (remaining := until - self.clock.now()) > 0:
            exchange = await self.transport.pushed(remaining)
            if exchange.items or exchange.findings:
                await self._take(exchange, "push")

    async def _until_quiet(self) -> None:
        # Queued speech always has a player: the queue only fills while something plays.
        for _ in range(1000):
            if self.ended or self.playing is None:
                return
            await self._advance_to(self.playing.ends)
        self._finding(Finding("never_quiet", "the assistant never stopped speaking", None))

    # -- events to the app --------------------------------------------------------------------

    async def _send(self, event_type: str, **fields: Any) -> None:
        if self.ended and event_type != "session_end":
            return
        event = {"type": event_type, "session": self.session, **fields}
        exchange = await self._exchange(event)
        if event_type in NO_REPLY_EVENTS:
            self._keep(exchange, event_type)
            if exchange.items and event_type == "session_end":
                self._finding(
                    Finding(
                        "reply_to_session_end",
                        "actions returned for session_end are never executed",
                        exchange.items,
                    ),
                    event_type,
                )
            return
        await self._take(exchange, event_type)

    async def _exchange(self, event: dict[str, Any]) -> Exchange:
        """Send one event, record it, and time its answer (the one place replies are timed)."""
        self.events.append(event)
        self._record("event", event)
        event_type = str(event.get("type"))
        sent = time.perf_counter()
        exchange = await self.transport.send(event)
        if self.transport.pairs_replies:
            if not any(f.code in UNREACHABLE for f in exchange.findings):
                self._replied(event_type, time.perf_counter() - sent)
        else:
            self._awaiting = (event_type, sent)
            if not exchange.items and event_type in ANSWER_DUE and self.transport.pushes_actions:
                left = self.transport.deadline - (time.perf_counter() - sent)
                if left > 0:
                    later = await self.transport.pushed(left)
                    exchange.items.extend(later.items)
                    exchange.findings.extend(later.findings)
                    exchange.arrived = exchange.arrived or later.arrived
            self._timed(exchange)
        return exchange

    def _timed(self, exchange: Exchange) -> None:
        """Pair the first frame that arrived after the awaited event with it (unpaired
        transports: a frame carries no reply-to, so the first one after an event answers it)."""
        awaiting, arrived = self._awaiting, exchange.arrived
        if awaiting is None or arrived is None or arrived < awaiting[1]:
            return
        self._awaiting = None
        event_type, sent = awaiting
        seconds = arrived - sent
        if seconds > self.transport.deadline:
            self.late.append(event_type)
        else:
            self._replied(event_type, seconds)

    def _replied(self, event_type: str, seconds: float) -> None:
        self.latencies.append((event_type, seconds))
        if self.on_reply is not None:
            self.on_reply(event_type, seconds)
        deadline = self.transport.deadline
        if seconds > deadline:
            self._finding(
                Finding(
                    "slow_reply",
                    f"the reply took {seconds:.2f} s; the service waits about {deadline:g} s",
                    None,
                ),
                event_type,
            )

    def _keep(self, exchange: Exchange, answering: str) -> None:
        """Record what came back (findings, then actions) without executing it."""
        for finding in exchange.findings:
            self._finding(finding, answering)
        if exchange.items:
            self.actions.extend(exchange.items)
            for item in exchange.items:
                self._record("action", item)

    async def _take(self, exchange: Exchange, answering: str) -> None:
        if answering == "push":
            self._timed(exchange)
        self._keep(exchange, answering)
        if not exchange.items:
            return
        valid, findings = check_actions(exchange.items, self.session_id)
        for finding in findings:
            self._finding(finding, answering)
        # The service runs the whole reply first; events it raises meanwhile (playback
        # starting, a failed SMS) reach the app after that.
        outer, self._later = self._later, []
        try:
            for action in valid:
                if self.ended:
                    break
                await self._execute(action)
        finally:
            later, self._later = self._later, outer
        for event_type, fields in later:
            await self._send(event_type, **fields)

    async def _raise(self, event_type: str, **fields: Any) -> None:
        """Send an event the service raises itself, after the reply being executed."""
        if self._later is not None:
            self._later.append((event_type, fields))
        else:
            await self._send(event_type, **fields)

    async def _user_speak(self, text: str, *, barged_in: bool) -> None:
        self._cancel_timeout()
        await self._send("user_speak", text=text, barged_in=barged_in)

    # -- executing actions --------------------------------------------------------------------

    async def _execute(self, action: dict[str, Any]) -> None:
        kind = action["type"]
        if kind in ("speak", "audio"):
            if kind == "speak":
                self.spoken.append(action.get("text") or action.get("ssml") or "")
                vad = action.get("vad")
                if isinstance(vad, dict) and isinstance(vad.get("end_of_turn_silence_ms"), int):
                    self._end_of_turn_ms = vad["end_of_turn_silence_ms"]
            await self._enqueue(_Playback(action, self._duration(action)))
        elif kind == "barge_in":
            self._queue.clear()
            if self.playing is not None:
                self._note("playback stopped by a barge_in action")
                self._stop_playback()
        elif kind == "hangup":
            await self._end("the assistant hung up")
        elif kind == "transfer":
            await self._transfer(action)
        elif kind == "send_sms":
            self.state["sms"].append(action)
            if self.config.sms_outcome == "failed":
                await self._raise(
                    "sms_failed",
                    reason="delivery_failed",
                    phone_number=action.get("phone_number"),
                )
        elif kind == "mix_audio":
            self.state["mix_audio"] = None if action.get("stop") else action
        elif kind == "configure_transcription":
            current = dict(self.state.get("transcription") or {})
            current.update({k: v for k, v in action.items() if k not in ("type", "session_id")})
            self.state["transcription"] = current
            vad = action.get("vad")
            if isinstance(vad, dict) and isinstance(vad.get("end_of_turn_silence_ms"), int):
                self._end_of_turn_ms = vad["end_of_turn_silence_ms"]
        elif kind == "configure_voice_to_voice":
            self.state["voice_to_voice"] = action

    def _duration(self, action: dict[str, Any]) -> float:
        if action["type"] == "audio":
            info = wav_info(action.get("audio", ""))
            return info[3] if info else 0.0
        text = action.get("text") or re.sub(r"<[^>]+>", " ", action.get("ssml") or "")
        words = " ".join(text.split())
        return max(len(words) / self.config.speaking_rate, 0.3)

    async def _enqueue(self, item: _Playback) -> None:
        if self.playing is None and not self._holding:
            await self._start_playback(item)
        else:
            self._queue.append(item)

    async def _start_playback(self, item: _Playback) -> None:
        self._cancel_timeout()
        now = self.clock.now()
        item.started, item.ends = now, now + item.duration
        self.playing = item
        item.timer = self._schedule(item.ends, "playback end", lambda: self._finish(item))
        fields: dict[str, Any] = {
            "duration_ms": round(item.duration * 1000),
            "speech_started_at": self.clock.epoch_ms(now),
        }
        for key in ("text", "ssml"):
            if item.action.get(key) is not None:
                fields[key] = item.action[key]
        await self._raise("assistant_speak", **fields)

    async def _finish(self, item: _Playback) -> None:
        if self.playing is not item:
            return
        self.playing = None
        self._holding = True  # speech queued before this point plays first
        try:
            await self._send("assistant_speech_ended")
        finally:
            self._holding = False
        if self._queue and not self.ended:
            await self._start_playback(self._queue.popleft())
        elif (
            item.timeout is not None
            and not self.ended
            and self.playing is None
            and self.clock.now() >= self._caller_until  # the caller is not mid-sentence
        ):
            self._timeout_timer = self._schedule(
                self.clock.now() + item.timeout, "user_input_timeout", self._fire_timeout
            )

    def _stop_playback(self) -> None:
        if self.playing is not None and self.playing.timer is not None:
            self.playing.timer.cancelled = True
        self.playing = None
        self._queue.clear()

    def _interrupt_time(
        self, item: _Playback, text: str, onset: float, spoken_until: float
    ) -> float | None:
        """When the caller's words cut the playback, or ``None``. Detection needs the caller
        to be talking: words that ended inside the ``allow_after_ms`` window cut nothing."""
        config = item.barge_in
        strategy = config.get("strategy", "minimum_characters")
        allow_after = item.started + (config.get("allow_after_ms") or 0) / 1000
        if strategy == "immediate":
            cut = max(onset, allow_after)
        elif strategy == "minimum_characters":
            needed = config.get("minimum_characters") or 3
            if len(text) < needed:
                return None
            cut = max(onset + needed / self.config.caller_rate, allow_after)
        else:
            return None  # none, manual: only a barge_in action interrupts
        return cut if cut <= spoken_until else None

    def _cancel_timeout(self) -> None:
        if self._timeout_timer is not None:
            self._timeout_timer.cancelled = True
            self._timeout_timer = None

    async def _fire_timeout(self) -> None:
        self._timeout_timer = None
        await self._send("user_input_timeout")

    async def _transfer(self, action: dict[str, Any]) -> None:
        self.state["transfers"].append(action)
        self._stop_playback()
        self._cancel_timeout()
        target = action.get("target_phone_number")
        if self.config.transfer_outcome == "answered":
            self._note(f"transferred to {target}; the call has left the assistant")
            if self.config.session_end_after_transfer:
                await self._end(f"transferred to {target}")
            else:
                self._finish_call(f"transferred to {target}")
            return
        timeout = action.get("timeout")
        if isinstance(timeout, int):
            self._note(f"transfer to {target} failed; the caller returns after {timeout} s")

            async def back() -> None:
                await self._send("session_start")

            self._schedule(self.clock.now() + timeout, "transfer fallback", back)
        else:
            await self._end(f"transfer to {target} failed (no timeout, so the call ends)")

    async def _end(self, reason: str) -> None:
        if self.ended:
            return
        self._finish_call(reason)
        await self._send("session_end")

    def _finish_call(self, reason: str) -> None:
        self.ended = True
        self.end_reason = reason
        self._stop_playback()
        for timer in self._timers:
            timer.cancelled = True
        self._note(f"call ended: {reason}")

    # -- records ------------------------------------------------------------------------------

    def _record(self, kind: str, data: Any) -> None:
        entry = {"t": round(self.clock.now(), 3), "kind": kind, "data": data}
        self.log.append(entry)
        for listener in self.listeners:
            listener(entry)

    def _note(self, text: str) -> None:
        self._record("note", text)

    def _finding(self, finding: Finding, answering: str | None = None) -> None:
        finding.at = self.clock.now()
        if finding.event is None:
            finding.event = answering
        self.findings.append(finding)
        self._record("finding", finding.to_dict())
