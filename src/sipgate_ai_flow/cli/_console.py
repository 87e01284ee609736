"""The terminal softphone behind ``aiflow call`` and ``aiflow demo``: input, screen, summary.

``Softphone`` drives an ``EmulatedCall`` on the real clock from lines of input (what the caller
says, or ``/`` commands); ``Screen`` renders the call's log as it happens, the assistant's
speech paced by its duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ..emulator.call import DTMF_KEYS, CallEndedError

if TYPE_CHECKING:
    from rich.console import Console

    from ..emulator.call import EmulatedCall

TICK = 0.05
"""Seconds between two looks at the input: how soon typing reaches the call."""
MAX_WAIT = 3600.0

COMMANDS = "/dtmf KEYS, /wait SECONDS, /hangup, /events, /quit, /help"
HELP = (
    "Type what you say and press Enter; typing while the assistant speaks is a barge-in "
    "attempt.\n"
    "  /dtmf 1#     press keys (0-9, * and #)\n"
    "  /wait 5      stay silent for 5 seconds (timeouts fire)\n"
    "  /hangup      hang up\n"
    "  /events      show or hide the raw event and action JSON\n"
    "  /quit        leave (hangs up a call still connected)"
)

_LABEL = 10
_TAGS = re.compile(r"<[^>]+>")


class InputError(ValueError):
    """A line the console cannot act on; the message is one line for the screen."""


@dataclass(frozen=True)
class Command:
    """One line of input: ``say`` (with the text) or a slash command."""

    name: str
    arg: Any = None


def parse_line(line: str) -> Command | None:
    """Read a line of input; ``None`` for a blank line, ``InputError`` for a bad command."""
    text = line.strip()
    if not text:
        return None
    if not text.startswith("/"):
        return Command("say", text)
    name, _, rest = text[1:].partition(" ")
    name, rest = name.lower(), rest.strip()
    if name == "dtmf":
        keys = "".join(rest.split())
        if not keys:
            raise InputError("usage: /dtmf KEYS, e.g. /dtmf 1# (keys 0-9, * and #)")
        bad = "".join(dict.fromkeys(k for k in keys if k not in DTMF_KEYS))
        if bad:
            raise InputError(f"/dtmf: {bad!r} cannot be pressed; keys are 0-9, * and #")
        return Command("dtmf", keys)
    if name == "wait":
        try:
            seconds = float(rest)
        except ValueError:
            raise InputError("usage: /wait SECONDS, e.g. /wait 5") from None
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_WAIT:
            raise InputError(f"/wait takes seconds between 0 and {MAX_WAIT:g}, e.g. /wait 5")
        return Command("wait", seconds)
    if name in ("hangup", "events", "quit", "help"):
        if rest:
            raise InputError(f"/{name} takes no argument")
        return Command(name)
    raise InputError(f"unknown command {text.split()[0]!r}; commands: {COMMANDS}")


def read_lines(
    stream: IO[str],
    inbox: asyncio.Queue[str | None],
    on_line: Callable[[], None] | None = None,
) -> threading.Thread:
    """Feed the lines of ``stream`` into ``inbox`` from a thread; ``None`` marks the end.

    ``on_line`` runs in the event loop as each line arrives (when a terminal has echoed it).
    A thread, not ``loop.add_reader``: that cannot watch files or ``/dev/null``. It is a daemon
    so that a read still blocked on a terminal does not keep the process alive at the end.
    """
    loop = asyncio.get_running_loop()

    def deliver(item: str | None) -> None:
        if item is not None and on_line is not None:
            on_line()
        inbox.put_nowait(item)

    def put(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            loop.call_soon_threadsafe(deliver, item)

    def pump() -> None:
        try:
            for line in stream:
                put(line)
        except (OSError, ValueError):
            pass
        finally:
            put(None)

    thread = threading.Thread(target=pump, name="aiflow-call-input", daemon=True)
    thread.start()
    return thread


def _plain(text: str) -> str:
    """The words of SSML (``<speak>...``); plain text as it is."""
    if not text.lstrip().startswith("<speak"):
        return text
    return " ".join(_TAGS.sub(" ", text).split())


@dataclass
class _Speech:
    text: str | None
    """What is spoken (tags of SSML removed); ``None`` for audio."""
    started: float
    duration: float
    shown: int = 0
    labelled: bool = False
    """The ``assistant`` label is on the screen (printed with the first word)."""


class Screen:
    """Renders a call as it happens: speech, caller turns, actions, timers and findings."""

    def __init__(
        self, console: Console, *, show_events: bool = False, tty_input: bool = False
    ) -> None:
        self.console = console
        self.show_events = show_events
        self.tty_input = tty_input
        """Input comes from a terminal, whose echo of the typed line moves the cursor."""
        self.call: EmulatedCall | None = None
        self._speech: _Speech | None = None
        self._col0 = True
        self._accounted = 0  # entries of call.spoken already shown as played or dropped
        self._announced: float | None = None  # when the announced user_input_timeout is due
        self._started = False
        self._timeout: float | None = None

    def attach(self, call: EmulatedCall) -> None:
        """Render ``call`` from now on."""
        self.call = call
        call.listeners.append(self.on_entry)

    # -- lines ----------------------------------------------------------------------------------

    def line(self, label: str, text: str, style: str = "", label_style: str | None = None) -> None:
        """One line: a label column, then the text."""
        from rich.text import Text

        self._break()
        self.console.print(
            Text.assemble(
                (f"{label:<{_LABEL}}", label_style if label_style is not None else style),
                (text, style),
            )
        )

    def notice(self, text: str) -> None:
        self.line("", text, "dim")

    def problem(self, text: str) -> None:
        self.line("!", text, "bold yellow")

    def _break(self) -> None:
        """End a line of speech still being written, so another line can be printed."""
        if not self._col0:
            self.console.print()
            self._col0 = True

    def typed(self) -> None:
        """The caller pressed Enter in the terminal: its echo ended the current line."""
        if self.tty_input:
            self._col0 = True

    # -- the log --------------------------------------------------------------------------------

    def on_entry(self, entry: dict[str, Any]) -> None:
        """Listener for ``EmulatedCall.log`` entries."""
        kind, data = entry["kind"], entry["data"]
        if self.show_events and kind in ("event", "action"):
            self._progress()  # the words played so far come before the JSON
            arrow = "-> app" if kind == "event" else "<- app"
            self.line(arrow, json.dumps(data, ensure_ascii=False), "dim")
        if kind == "event":
            self._event(data)
        elif kind == "action":
            self._action(data)
        elif kind == "note":
            self._note(str(data))
        elif kind == "finding":
            self._finding(data)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session_start":
            session = event.get("session") or {}
            if self._started:
                self.line("call", "the caller is back: session_start again", "dim")
            else:
                self._started = True
                self.line(
                    "call",
                    f"{session.get('direction', 'inbound')} call from "
                    f"{session.get('from_phone_number')} to {session.get('to_phone_number')} "
                    f"(session {session.get('id')})",
                    "dim",
                )
        elif kind == "assistant_speak":
            self._speech_started(event)
        elif kind == "assistant_speech_ended":
            self._speech_ended()
        elif kind == "user_speak":
            flag = "  (barge-in)" if event.get("barged_in") else ""
            self.line("you", f"{event.get('text')}{flag}", "green", "bold green")
        elif kind == "dtmf_received":
            self.line("you", f"press {event.get('digit')}", "green", "bold green")
        elif kind == "user_input_timeout":
            self.line("timer", "user_input_timeout: you stayed silent", "yellow", "bold yellow")
        elif kind == "sms_failed":
            self.line("sms", f"failed ({event.get('reason')}): sms_failed sent", "magenta")

    def _action(self, action: dict[str, Any]) -> None:
        kind = action.get("type")
        if kind in ("speak", "audio"):
            return  # shown when it plays
        if kind == "transfer":
            who = " ".join(
                str(action[k]) for k in ("caller_id_name", "caller_id_number") if action.get(k)
            )
            text = f"to {action.get('target_phone_number')}" + (
                f" (caller id {who})" if who else ""
            )
            self.line("transfer", text, "magenta", "bold magenta")
        elif kind == "send_sms":
            self.line(
                "sms",
                f"to {action.get('phone_number')}: {action.get('message')}",
                "magenta",
                "bold magenta",
            )
        elif kind == "hangup":
            self.line("hangup", "the assistant hangs up", "magenta", "bold magenta")
        elif kind == "barge_in":
            self.line("barge_in", "the assistant stops its speech", "magenta", "bold magenta")
        else:
            self.line("action", str(kind), "dim")

    def _note(self, text: str) -> None:
        if text.startswith(("caller barged in", "playback stopped")):
            self._cut()
            self.notice(text.replace("caller barged in", "you barged in", 1))
            self._drop("dropped")
        elif text.startswith("call ended: "):
            self._cut()
            self._drop("unplayed")
            self.line("call", text.removeprefix("call "), "bold")
        else:
            if self._speech is not None and self.call is not None and self.call.playing is None:
                self._cut()
            self.notice(text)

    def _finding(self, finding: dict[str, Any]) -> None:
        warning = finding.get("severity") == "warning"
        where = f" (answering {finding['event']})" if finding.get("event") else ""
        text = f"[{finding.get('code')}] {finding.get('message')}{where}"
        payload = finding.get("payload")
        if payload is not None:
            text += f": {json.dumps(payload, ensure_ascii=False)[:300]}"
        style = "yellow" if warning else "red"
        self.line("warning" if warning else "finding", text, style, f"bold {style}")

    # -- speech ---------------------------------------------------------------------------------

    def _speech_started(self, event: dict[str, Any]) -> None:
        from rich.text import Text

        self._cut()
        playing = self.call.playing if self.call is not None else None
        key = "text" if event.get("text") is not None else "ssml"
        is_speak = event.get(key) is not None
        # Raised after the whole reply ran: the playback may have been stopped meanwhile.
        if playing is None or playing.action.get(key) != event.get(key):
            return
        if is_speak:
            self._accounted += 1
        text = event.get(key)
        if key == "ssml" and text is not None:
            text = _plain(text)
        self._speech = speech = _Speech(text, playing.started, playing.duration)
        self._timeout = playing.timeout  # what the timer armed after this speech waits
        if text is None:
            self._open(speech)
            self.console.print(Text(f"(plays audio, {playing.duration:.1f} s)", "cyan"), end="")
        self.tick()

    def _speech_ended(self) -> None:
        speech = self._speech
        if speech is not None:
            self._show(1.0)
            if not speech.labelled:  # a speech without words
                self._open(speech)
            self._speech = None
            self._break()

    def _open(self, speech: _Speech) -> None:
        """Get the cursor where the speech's next words go: after its label, or a fresh line
        with ``...`` when another line came in between."""
        from rich.text import Text

        if not speech.labelled:
            self._break()
            self.console.print(Text(f"{'assistant':<{_LABEL}}", "bold cyan"), end="")
            speech.labelled = True
        elif self._col0:
            self.console.print(Text(f"{'':<{_LABEL}}... ", "dim"), end="")
        self._col0 = False

    def _cut(self) -> None:
        """The playback stopped early: show what was heard, marked as cut off."""
        from rich.text import Text

        speech = self._speech
        if speech is None or self.call is None:
            return
        self._speech = None
        elapsed = self.call.clock.now() - speech.started
        if speech.duration > 0 and elapsed >= speech.duration:
            self._show_text(speech, len(speech.text or ""))
            self._break()
            return
        fraction = elapsed / speech.duration if speech.duration > 0 else 1.0
        self._show_text(speech, int(len(speech.text or "") * fraction))
        self._open(speech)
        heard = (speech.text or "")[: speech.shown]
        gap = "" if not heard or heard.endswith(" ") else " "
        self.console.print(Text(f"{gap}-- [cut off]", "bold yellow"), end="")
        self._col0 = False
        self._break()

    def _drop(self, what: str) -> None:
        if self.call is None:
            return
        pending = self.call.spoken[self._accounted :]
        self._accounted = len(self.call.spoken)
        for text in pending:
            self.line(what, _plain(text), "dim cyan", "dim")

    def tick(self) -> None:
        """Write the words of the current speech that have played by now, and a timer armed."""
        self._progress()
        self._announce_timer()

    def _progress(self) -> None:
        speech = self._speech
        if speech is not None and self.call is not None:
            elapsed = self.call.clock.now() - speech.started
            self._show(elapsed / speech.duration if speech.duration > 0 else 1.0)

    def _show(self, fraction: float) -> None:
        speech = self._speech
        if speech is None or speech.text is None:
            return
        text = speech.text
        if fraction >= 1:
            upto = len(text)
        else:
            # Whole words only while it plays.
            upto = text.rfind(" ", speech.shown, int(len(text) * max(fraction, 0.0)) + 1)
        self._show_text(speech, upto)

    def _show_text(self, speech: _Speech, upto: int) -> None:
        from rich.text import Text

        if speech.text is None or upto <= speech.shown:
            return
        self._open(speech)
        self.console.print(Text(speech.text[speech.shown : upto], "cyan"), end="")
        speech.shown = upto

    def _announce_timer(self) -> None:
        due = self.call.timeout_due if self.call is not None else None
        if due is None or due == self._announced:
            return
        self._announced = due
        seconds = f"{self._timeout:g} s " if self._timeout else ""
        self.line(
            "timer",
            f"user_input_timeout in {seconds}unless you speak or press a key",
            "dim yellow",
        )

    # -- the end --------------------------------------------------------------------------------

    def finish(self) -> None:
        """Close a speech still on the screen (the console stops rendering)."""
        self.tick()
        self._speech = None
        self._break()

    def summary(self, call: EmulatedCall, *, record: str | None = None) -> None:
        """A short account of the call: how it ended, turns, reply latencies, findings."""
        self.finish()
        self.console.rule("summary", style="dim")
        ended = call.end_reason or "still connected"
        self.line("call", f"{ended}, after {call.clock.now():.1f} s")
        said = sum(e["type"] == "user_speak" for e in call.events)
        keys = sum(e["type"] == "dtmf_received" for e in call.events)
        played = sum(e["type"] == "assistant_speak" for e in call.events)
        self.line(
            "turns",
            f"{said + keys} caller turn(s): {said} spoken, {keys} key(s); "
            f"the assistant spoke {played} time(s)",
        )
        if call.latencies:
            slowest = max(call.latencies, key=lambda item: item[1])
            ordered = sorted(seconds for _, seconds in call.latencies)
            self.line(
                "latency",
                f"{len(ordered)} replies: median {ordered[len(ordered) // 2] * 1000:.1f} ms, "
                f"slowest {slowest[1] * 1000:.1f} ms ({slowest[0]}); each, in ms:",
            )
            each = [f"{event} {seconds * 1000:.1f}" for event, seconds in call.latencies]
            for row in _rows(each, 78):
                self.line("", row, "dim")
        if call.findings:
            self.line("findings", f"{len(call.findings)}", "bold red", "bold red")
            for finding in call.findings:
                where = f" (answering {finding.event})" if finding.event else ""
                self.line("", f"[{finding.code}] {finding.message}{where}", "red")
        else:
            self.line("findings", "none", "green")
        if record:
            self.line("recorded", record)


def _rows(items: list[str], width: int) -> list[str]:
    """``items`` joined by `` | `` into rows of at most ``width`` characters."""
    rows: list[str] = []
    for item in items:
        if rows and len(rows[-1]) + 3 + len(item) <= width:
            rows[-1] += f" | {item}"
        else:
            rows.append(item)
    return rows


class Softphone:
    """Drives a started call from lines of input until the input or the call ends.

    ``polite``: every line waits until the assistant has finished speaking and has answered
    the previous one (piped input). Otherwise a line typed during the assistant's speech is a
    barge-in attempt, judged by the playing action's barge-in config.
    """

    def __init__(
        self,
        call: EmulatedCall,
        screen: Screen,
        inbox: asyncio.Queue[str | None],
        *,
        polite: bool,
    ) -> None:
        self.call = call
        self.screen = screen
        self.inbox = inbox
        self.polite = polite
        self._stopping = False

    def interrupt(self) -> None:
        """Ctrl-C: hang up and finish as soon as the current step allows."""
        self._stopping = True
        self.screen.notice("Ctrl-C: hanging up (again to stop at once)")

    async def run(self) -> None:
        renderer = asyncio.get_running_loop().create_task(self._render())
        try:
            if self.polite:
                await self._answer(0)  # the greeting, before the first line
            await self._converse()
            if not self.call.ended:
                await self.call.hangup()
        except CallEndedError:
            pass  # the call ended under a step: nothing left to do
        finally:
            renderer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renderer
            self.screen.finish()

    def _over(self) -> bool:
        # A method, not an expression: the call ends while steps run, behind the type checker.
        return self.call.ended or self._stopping

    async def _render(self) -> None:
        while True:
            self.screen.tick()
            await asyncio.sleep(TICK)

    async def _converse(self) -> None:
        while not self._over():
            try:
                line = self.inbox.get_nowait()
            except asyncio.QueueEmpty:
                await self.call.silence(TICK)  # keeps time moving: playback ends, timeouts fire
                continue
            if self.polite:  # every line, commands too, once the assistant is quiet
                await self._quiet()
            if self.call.ended:
                return
            if line is None:
                self.screen.notice("end of input: hanging up")
                return
            try:
                command = parse_line(line)
            except InputError as exc:
                self.screen.problem(str(exc))
                continue
            if command is None:
                continue
            if not await self._perform(command):
                return

    async def _perform(self, command: Command) -> bool:
        """Carry out one command; ``False`` ends the conversation."""
        call, name = self.call, command.name
        if name == "events":
            self.screen.show_events = not self.screen.show_events
            state = "shown" if self.screen.show_events else "hidden"
            self.screen.notice(f"raw event and action JSON {state}")
            return True
        if name == "help":
            for line in HELP.splitlines():
                self.screen.notice(line)
            return True
        if name == "quit":
            return False
        if call.ended:
            return False
        answered = len(call.actions)
        if name == "say":
            playing = call.playing
            if playing is not None:
                after_ms = max(0, round((call.clock.now() - playing.started) * 1000))
                await call.say(command.arg, after_ms=after_ms)
            else:
                await call.say(command.arg)
        elif name == "dtmf":
            await call.press(command.arg)
        elif name == "wait":
            await self._wait(float(command.arg))
        elif name == "hangup":
            await call.hangup()
            return False
        if self.polite and name != "wait":
            await self._answer(answered)
        return True

    async def _wait(self, seconds: float) -> None:
        call = self.call
        until = call.clock.now() + seconds
        # In slices, so that Ctrl-C is heard during a long wait.
        while not call.ended and not self._stopping and (left := until - call.clock.now()) > 0:
            await call.silence(min(left, 0.25))

    async def _quiet(self) -> None:
        if not self.call.ended:
            await self.call.wait_until_quiet()

    async def _answer(self, before: int) -> None:
        """Over WebSocket an app may answer after the event's exchange (after a hold message,
        say): wait for it up to the deadline before the next line is said."""
        call = self.call
        if call.transport.pairs_replies:  # the answer came with the event's exchange
            return
        until = call.clock.now() + call.transport.deadline
        while (
            not call.ended
            and call.playing is None
            and len(call.actions) == before
            and call.clock.now() < until
        ):
            await call.silence(TICK)
