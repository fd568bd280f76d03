"""What the bus shows of each IVR call, by SIP Call-ID: which edge answered it, what the
IVR told the edge to play, what the edge played and how the call ended, and when its
login reached the ledger.

The observer's connection is to one node that the run does not kill: core NATS
messages are not stored, so a connection that moved to another node would miss those
sent in between.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from hotdesk_contracts import subjects
from hotdesk_contracts.codec import EventDecodeError, decode_event
from hotdesk_contracts.commands import EdgeCommand, HangUp, PlayPrompts
from hotdesk_contracts.events import LoggedIn, Roamed
from hotdesk_contracts.messages import CallEnded, DtmfReceived, FeatureDialled, PromptsPlayed

CONFIRMATION = "logged-in"
"""The prompt the IVR plays once the login is in the ledger."""

_CallEvent = DtmfReceived | PromptsPlayed | CallEnded


@dataclass
class CallTrace:
    """One call, as the bus showed it."""

    call_id: str
    edge: str = ""
    """The answering edge's instance id."""
    desk: str = ""
    user: str = ""
    dialled_at: float = 0.0
    """Harness monotonic time of the dial event."""
    plays: list[tuple[str, list[str]]] = field(default_factory=list)
    """(play_id, prompt ids) the IVR asked the edge to play, in order."""
    played: list[tuple[str, bool]] = field(default_factory=list)
    """(play_id, completed) of every play the edge reported finished; a play id the
    IVR never sent is the edge's own (its error prompt when no IVR answers)."""
    hangup_commanded: bool = False
    ended: str = ""
    """``CallEnded.reason`` (``hangup``: the edge hung up; ``bye``: the phone did)."""
    last_digit_at: float = 0.0
    """Harness monotonic time of the ``#`` that ended the PIN."""
    login_at: float = 0.0
    """Harness monotonic time the call's LoggedIn/Roamed reached the observer."""

    @property
    def confirmed(self) -> bool:
        """The IVR asked for the confirmation prompt (only after the ledger append)."""
        return any(p.endswith("/" + CONFIRMATION) for _, prompts in self.plays for p in prompts)

    @property
    def edge_spoke_on_its_own(self) -> bool:
        """The edge finished a prompt the IVR never asked for: its error prompt."""
        asked = {play_id for play_id, _ in self.plays}
        return any(play_id not in asked for play_id, _ in self.played)

    @property
    def last_prompts(self) -> list[str]:
        return self.plays[-1][1] if self.plays else []


class Observer:
    """Follows edge events, IVR commands and ledger logins on one connection."""

    def __init__(self) -> None:
        self.calls: dict[str, CallTrace] = {}
        self.login_arrivals: list[float] = []
        """Harness monotonic times of every LoggedIn/Roamed with a call id."""

    def call(self, call_id: str) -> CallTrace:
        trace = self.calls.get(call_id)
        if trace is None:
            trace = self.calls[call_id] = CallTrace(call_id)
        return trace

    async def subscribe(self, nc: Client) -> None:
        await nc.subscribe(subjects.EDGE_DIAL_ALL, cb=self._on_dial)
        await nc.subscribe(subjects.EDGE_CALL_ALL, cb=self._on_call_event)
        await nc.subscribe(f"{subjects.EDGE_COMMAND_PREFIX}.>", cb=self._on_command)
        await nc.subscribe(subjects.LEDGER_DESKS, cb=self._on_ledger)
        await nc.flush()

    async def _on_dial(self, msg: Msg) -> None:
        try:
            dialled = msgspec.json.decode(msg.data, type=FeatureDialled)
        except msgspec.DecodeError:
            return
        trace = self.call(dialled.call_id)
        trace.edge = dialled.origin
        trace.desk = dialled.caller
        trace.user = dialled.argument
        trace.dialled_at = time.monotonic()

    async def _on_call_event(self, msg: Msg) -> None:
        try:
            event = msgspec.json.decode(msg.data, type=_CallEvent)
        except msgspec.DecodeError:
            return
        trace = self.call(event.call_id)
        if isinstance(event, DtmfReceived):
            if event.digit == "#":
                trace.last_digit_at = time.monotonic()
        elif isinstance(event, PromptsPlayed):
            trace.played.append((event.play_id, event.completed))
        else:
            trace.ended = event.reason

    async def _on_command(self, msg: Msg) -> None:
        try:
            command = msgspec.json.decode(msg.data, type=EdgeCommand)
        except msgspec.DecodeError:
            return
        if isinstance(command, PlayPrompts):
            self.call(command.call_id).plays.append((command.play_id, list(command.prompts)))
        elif isinstance(command, HangUp):
            self.call(command.call_id).hangup_commanded = True

    async def _on_ledger(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except EventDecodeError:
            return
        if isinstance(event, LoggedIn | Roamed) and event.cause.call_id:
            now = time.monotonic()
            self.call(event.cause.call_id).login_at = now
            self.login_arrivals.append(now)
