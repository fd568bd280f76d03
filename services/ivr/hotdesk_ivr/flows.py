"""The hot-desk call flows as pure state machines.

A :class:`CallFlow` is fed what happens on one IVR call (the dial, digits, finished
prompts, timer ticks, answers from the ledger) and answers with actions for the adapter
to carry out (play prompts, hang up, check a PIN, read or write the ledger, arm the
digit timer). It reads no clock and touches no network: ``now`` comes with each input.

Login, ``*77*<ext>*``: the PIN is asked first, for every extension, so that nothing a
caller hears before a right PIN tells whether an extension exists, may log in, is locked
out or sits elsewhere::

    PIN ─# / timeout─► lookup ─► locked out ─────────────► locked-out, hang up (no verify)
                              ─► verify ─► right ─► seated elsewhere ─► "press 1" ─► 1: LogIn(move)
                                                 └► LogIn ─► logged-in, hang up
                                         └► wrong ─► RecordPinFailure ─► pin-wrong, PIN again
                                                     (3 tries per call; lockout → locked-out)

An unknown extension, or one without a PIN, hears "that extension is not known" and
the call ends (``policies.announce_unknown_extension``, the default). With that policy
off it is asked for a PIN the same way as a real one, its PIN is checked against a
dummy hash (so it takes as long) and always found wrong: then nothing before a right
PIN tells whether an extension exists. Prompts before a right PIN are in the default
language; the user's own language (which would betray the extension) is used from then
on.

A locked-out user is told so once they have typed a PIN, without it being checked:
checking it would let a guesser go on guessing through the lockout, and a user who
knows the right PIN deserves to hear why it does not work rather than "wrong PIN".

Logout, ``*77*5*``: a user at the desk ─► LogOut ─► logged-out; an idle desk ─►
desk-not-in-use; both hang up.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from hotdesk_contracts.commands import LedgerCommand, LogIn, LogOut, RecordPinFailure
from hotdesk_contracts.directory import Directory
from hotdesk_contracts.events import Cause, LedgerEvent, LogoutReason, PinLockedOut
from hotdesk_contracts.messages import FeatureDialled

DEFAULT_LANGUAGE = "en"
LOGIN = "login"
LOGOUT = "logout"


# --- inputs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Digit:
    """A DTMF digit arrived."""

    digit: str


@dataclass(frozen=True)
class PromptsDone:
    """A ``Play`` finished (``completed``) or was interrupted."""

    play_id: str
    completed: bool


@dataclass(frozen=True)
class DigitTimeout:
    """The timer armed by ``StartDigitTimer(token)`` ran out."""

    token: int


@dataclass(frozen=True)
class CallGone:
    """The caller hung up (or the media stopped): nothing more will be played."""


@dataclass(frozen=True)
class Facts:
    """The ledger's answer to ``Lookup``: who sits at the desk, where the user sits,
    whether the user is locked out."""

    desk_user: str | None
    user_desk: str | None = None
    locked_out: bool = False


@dataclass(frozen=True)
class PinChecked:
    """The answer to ``VerifyPin``."""

    ok: bool


@dataclass(frozen=True)
class CommandDone:
    """The ledger appended these events for the last ``Execute``."""

    events: list[LedgerEvent]


@dataclass(frozen=True)
class CommandFailed:
    """The ledger refused the last ``Execute``; ``code`` is the ``DomainError`` code
    (``desk_changed``, ``desk_idle``, ``locked_out``, ``conflict``, …)."""

    code: str


FlowInput = (
    Digit | PromptsDone | DigitTimeout | CallGone | Facts | PinChecked | CommandDone | CommandFailed
)


# --- actions --------------------------------------------------------------------------
@dataclass(frozen=True)
class Play:
    prompts: list[str]
    play_id: str
    barge_in: bool = True


@dataclass(frozen=True)
class HangUp:
    """End the call once the prompts already asked for have played."""


@dataclass(frozen=True)
class Lookup:
    """Read the ledger: ``desk``'s user and, if ``user`` is set, where they sit and
    whether they are locked out. Answer with :class:`Facts`."""

    desk: str
    user: str | None


@dataclass(frozen=True)
class VerifyPin:
    """Check ``pin`` against the argon2 ``pin_hash`` (off the event loop); answer with
    :class:`PinChecked`. The PIN must never be logged."""

    pin: str = field(repr=False)
    pin_hash: str = field(repr=False)


@dataclass(frozen=True)
class Execute:
    """Execute a ledger command; answer with :class:`CommandDone` or :class:`CommandFailed`."""

    command: LedgerCommand


@dataclass(frozen=True)
class StartDigitTimer:
    """(Re)arm the one digit timer; when it runs out, feed ``DigitTimeout(token)``."""

    seconds: float
    token: int


@dataclass(frozen=True)
class CancelDigitTimer:
    pass


Action = Play | HangUp | Lookup | VerifyPin | Execute | StartDigitTimer | CancelDigitTimer


class Stage(enum.Enum):
    LOOKUP = "lookup"
    ASK_MOVE = "ask-move"
    PIN = "pin"
    VERIFY = "verify"
    RECORD_FAILURE = "record-failure"
    LOGIN = "login"
    LOGOUT = "logout"
    DONE = "done"


def spell_desk(desk: str) -> list[str]:
    """Prompt names that read a desk name out: ``HD0002`` → letter-h letter-d digit-0 …"""
    out = []
    for char in desk.lower():
        if char.isdigit():
            out.append(f"digit-{char}")
        elif char.isalpha():
            out.append(f"letter-{char}")
    return out


class CallFlow:
    """One IVR call. Create it from the edge's :class:`FeatureDialled`, call
    :meth:`start`, then :meth:`handle` each input; carry out the returned actions in
    order. :attr:`finished` turns true once the flow has nothing more to do."""

    def __init__(
        self, dialled: FeatureDialled, directory: Directory, *, claim_id: str | None = None
    ) -> None:
        self.dialled = dialled
        self.claim_id = claim_id or uuid.uuid4().hex
        """Names this call's ledger commands. Generated when the IVR claims the call,
        never taken from the phone's Call-ID: a phone may reuse a Call-ID, and the
        ledger's dedupe window would then drop its commands as duplicates."""
        self.directory = directory
        self.policies = directory.policies
        self.stage = Stage.LOOKUP
        self.desk = dialled.caller
        self.user: str | None = None
        self.language = DEFAULT_LANGUAGE
        self.pin_hash = ""
        self.facts: Facts | None = None
        self.tries = 0
        self.digits = ""
        self.timer_token = 0
        self._plays = 0
        self._commands = 0
        self._waiting_play: str | None = None
        """The prompt whose end arms the digit timer (the PIN or move question)."""
        self._pin = ""
        """The PIN typed, between the hash key and its check; never logged."""
        self._user_language = DEFAULT_LANGUAGE

    @property
    def finished(self) -> bool:
        return self.stage is Stage.DONE

    # --- helpers ------------------------------------------------------------------------
    def _prompt_ids(self, names: list[str]) -> list[str]:
        return [f"{self.language}/{name}" for name in names]

    def _play(self, *names: str, barge_in: bool = True) -> Play:
        self._plays += 1
        return Play(self._prompt_ids(list(names)), f"p{self._plays}", barge_in)

    def _end(self, *names: str) -> list[Action]:
        self.stage = Stage.DONE
        actions: list[Action] = [CancelDigitTimer()]
        if names:
            actions.append(self._play(*names, barge_in=False))
        actions.append(HangUp())
        return actions

    def _command_id(self) -> str:
        # Deterministic per claimed call and step: a retried append dedupes on
        # Nats-Msg-Id, while another call reusing the Call-ID gets fresh ids.
        self._commands += 1
        return f"ivr:{self.claim_id}:{self._commands}"

    def _cause(self) -> Cause:
        actor = f"user:{self.user}" if self.user else f"desk:{self.desk}"
        return Cause(actor=actor, call_id=self.dialled.call_id)

    @property
    def _correlation(self) -> str:
        return f"call:{self.dialled.call_id}"

    def _arm_timer(self) -> StartDigitTimer:
        self.timer_token += 1
        return StartDigitTimer(self.policies.pin_digit_timeout_seconds, self.timer_token)

    def _ask_pin(self, *before: str) -> list[Action]:
        self.stage = Stage.PIN
        self.digits = ""
        play = self._play(*before, "enter-pin")
        self._waiting_play = play.play_id
        return [CancelDigitTimer(), play]

    # --- the flow ---------------------------------------------------------------------
    def start(self, now: datetime) -> list[Action]:
        """The first actions of the call."""
        if self.directory.desk(self.desk) is None:
            return self._end("error")  # only desks log in and out here
        if self.dialled.feature == LOGOUT:
            self.stage = Stage.LOOKUP
            return [Lookup(desk=self.desk, user=None)]
        if self.dialled.feature != LOGIN:
            return self._end("error")
        extension = self.directory.extension(self.dialled.argument)
        if extension is not None and extension.pin_hash:
            self.user = extension.number
            self.pin_hash = extension.pin_hash
            self._user_language = extension.language or DEFAULT_LANGUAGE
        elif self.policies.announce_unknown_extension:
            return self._end("unknown-extension")
        # Otherwise no user and an empty hash: the adapter checks the PIN against a
        # dummy hash, which never matches, and the caller hears what a wrong PIN gets.
        return self._ask_pin()

    def handle(self, event: FlowInput, now: datetime) -> list[Action]:
        """Advance the flow by one input."""
        if self.stage is Stage.DONE:
            return []
        if isinstance(event, CallGone):
            self.stage = Stage.DONE
            return [CancelDigitTimer()]
        if isinstance(event, Facts) and self.stage is Stage.LOOKUP:
            return self._on_facts(event, now)
        if isinstance(event, PromptsDone):
            if event.play_id == self._waiting_play and self.stage in (Stage.PIN, Stage.ASK_MOVE):
                self._waiting_play = None
                return [self._arm_timer()]
            return []
        if isinstance(event, Digit):
            return self._on_digit(event.digit, now)
        if isinstance(event, DigitTimeout) and event.token == self.timer_token:
            return self._on_timeout()
        if isinstance(event, PinChecked) and self.stage is Stage.VERIFY:
            return self._on_pin_checked(event.ok, now)
        if isinstance(event, CommandDone):
            return self._on_command_done(event.events)
        if isinstance(event, CommandFailed):
            return self._on_command_failed(event.code)
        return []

    def _on_facts(self, facts: Facts, now: datetime) -> list[Action]:
        self.facts = facts
        if self.dialled.feature == LOGOUT:
            if facts.desk_user is None:
                return self._end("desk-not-in-use")
            user = self.directory.extension(facts.desk_user)
            self.language = (user.language if user else "") or DEFAULT_LANGUAGE
            self.stage = Stage.LOGOUT
            reason = LogoutReason.USER_KEY if self.dialled.via_key else LogoutReason.USER_CODE
            return [
                Execute(
                    LogOut(
                        command_id=self._command_id(),
                        at=now,
                        cause=self._cause(),
                        correlation_id=self._correlation,
                        desk=self.desk,
                        reason=reason,
                        user=facts.desk_user,
                    )
                )
            ]
        # Login: a PIN has been typed.
        if facts.locked_out and self.user is not None:
            return self._end("locked-out")
        self.stage = Stage.VERIFY
        pin, self._pin = self._pin, ""
        return [VerifyPin(pin=pin, pin_hash=self.pin_hash)]

    def _on_digit(self, digit: str, now: datetime) -> list[Action]:
        if self.stage is Stage.ASK_MOVE:
            self._waiting_play = None
            if digit == "1":
                return [CancelDigitTimer(), *self._log_in(now)]
            # Anything else: ask again (the caller may hang up instead, as told).
            play = self._play("press-1-to-move")
            self._waiting_play = play.play_id
            return [CancelDigitTimer(), play]
        if self.stage is not Stage.PIN:
            return []
        self._waiting_play = None
        if digit == "#":
            return self._submit_pin()
        if digit == "*":  # start the PIN again
            self.digits = ""
            return [self._arm_timer()]
        if digit.isdigit() and len(self.digits) < 32:
            self.digits += digit
        return [self._arm_timer()]

    def _on_timeout(self) -> list[Action]:
        if self.stage is Stage.ASK_MOVE:
            return self._end("goodbye")
        if self.stage is not Stage.PIN:
            return []
        if self.digits:  # the caller forgot the hash key: take what was typed
            return self._submit_pin()
        self.tries += 1
        if self.tries >= self.policies.pin_tries_per_call:
            return self._end("goodbye")
        return self._ask_pin()

    def _submit_pin(self) -> list[Action]:
        # Read the ledger only now, for every extension alike, and afresh on each try.
        self._pin, self.digits = self.digits, ""
        self.stage = Stage.LOOKUP
        return [CancelDigitTimer(), Lookup(desk=self.desk, user=self.user)]

    def _on_pin_checked(self, ok: bool, now: datetime) -> list[Action]:
        assert self.facts is not None
        if not ok and self.user is None:
            return self._pin_wrong()  # nobody to record the failure against
        assert self.user is not None
        if not ok:
            self.stage = Stage.RECORD_FAILURE
            return [
                Execute(
                    RecordPinFailure(
                        command_id=self._command_id(),
                        at=now,
                        cause=self._cause(),
                        correlation_id=self._correlation,
                        user=self.user,
                        desk=self.desk,
                    )
                )
            ]
        self.language = self._user_language
        elsewhere = self.facts.user_desk is not None and self.facts.user_desk != self.desk
        if elsewhere and self.policies.exclusive:
            assert self.facts.user_desk is not None
            self.stage = Stage.ASK_MOVE
            play = self._play(
                "logged-in-elsewhere", *spell_desk(self.facts.user_desk), "press-1-to-move"
            )
            self._waiting_play = play.play_id
            return [play]
        return self._log_in(now)

    def _log_in(self, now: datetime) -> list[Action]:
        assert self.user is not None
        assert self.facts is not None
        self.stage = Stage.LOGIN
        elsewhere = self.facts.user_desk is not None and self.facts.user_desk != self.desk
        return [
            Execute(
                LogIn(
                    command_id=self._command_id(),
                    at=now,
                    cause=self._cause(),
                    correlation_id=self._correlation,
                    desk=self.desk,
                    user=self.user,
                    seen_user=self.facts.desk_user,
                    move=elsewhere,
                )
            )
        ]

    def _pin_wrong(self) -> list[Action]:
        self.tries += 1
        if self.tries >= self.policies.pin_tries_per_call:
            return self._end("pin-wrong", "goodbye")
        return self._ask_pin("pin-wrong")

    def _on_command_done(self, events: list[LedgerEvent]) -> list[Action]:
        if not events and not self._nothing_to_do():
            # Nothing appended although the command had something to record: the
            # ledger dropped it (e.g. as a duplicate). Announcing success would lie.
            return self._end("error")
        if self.stage is Stage.RECORD_FAILURE:
            if any(isinstance(e, PinLockedOut) for e in events):
                return self._end("pin-wrong", "locked-out")
            return self._pin_wrong()
        if self.stage is Stage.LOGIN:
            return self._end("logged-in")
        if self.stage is Stage.LOGOUT:
            return self._end("logged-out")
        return []

    def _nothing_to_do(self) -> bool:
        """Whether an empty answer to the last command is the ledger's idempotent
        "already so": only a login of the user the flow saw seated at this desk."""
        return (
            self.stage is Stage.LOGIN
            and self.facts is not None
            and self.facts.desk_user is not None
            and self.facts.desk_user == self.user
        )

    def _on_command_failed(self, code: str) -> list[Action]:
        if self.stage not in (Stage.RECORD_FAILURE, Stage.LOGIN, Stage.LOGOUT):
            return []
        if code == "locked_out":
            return self._end("locked-out")
        if code == "desk_changed":
            return self._end("desk-busy")
        if code == "desk_idle" and self.stage is Stage.LOGOUT:
            return self._end("desk-not-in-use")
        return self._end("error")
