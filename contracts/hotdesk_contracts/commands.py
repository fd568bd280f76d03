"""Commands: imperative requests that may be refused.

Ledger commands are decided by the aggregates in ``hotdesk_ledger``; edge commands are
sent by the IVR and the provisioner to the SIP edge over NATS.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from .events import Cause, LogoutReason


class _Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    command_id: str
    """Unique per command; appends use it (with a suffix) as ``Nats-Msg-Id``."""
    at: datetime
    cause: Cause
    correlation_id: str


# --- ledger commands ----------------------------------------------------------------
class LogIn(_Command, frozen=True, tag="LogIn"):
    """Seat ``user`` at ``desk``.

    ``seen_user`` is who the caller was told sits at the desk when it decided to log in
    (``None`` for an idle desk). If someone else got there first, the command is refused
    with ``DeskChanged`` rather than silently roaming a desk the user never saw.
    ``move`` allows leaving another desk the user sits at (reason ``elsewhere``).
    """

    desk: str
    user: str
    seen_user: str | None = None
    move: bool = True


class LogOut(_Command, frozen=True, tag="LogOut"):
    """Free ``desk``. Refused with ``DeskIdle`` when nobody sits there.

    ``user``, when given, must be the one sitting there (guards an admin click on a
    stale screen).
    """

    desk: str
    reason: LogoutReason
    user: str | None = None


class RecordPinFailure(_Command, frozen=True, tag="RecordPinFailure"):
    """A wrong PIN was entered for ``user`` at ``desk``."""

    user: str
    desk: str


class ClearPinLockout(_Command, frozen=True, tag="ClearPinLockout"):
    """An admin lifts a user's lockout."""

    user: str


LedgerCommand = LogIn | LogOut | RecordPinFailure | ClearPinLockout


# --- edge commands --------------------------------------------------------------------
class _EdgeCommand(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    trace: dict[str, str] = {}
    """W3C trace context, for the span that sent the command."""


class PlayPrompts(_EdgeCommand, frozen=True, tag="PlayPrompts"):
    """Play prompts in order on a call the edge answered. ``prompts`` are prompt ids
    (e.g. ``en/enter-pin``); ``barge_in`` stops playback at the first DTMF digit."""

    call_id: str
    prompts: list[str]
    barge_in: bool = True
    play_id: str = ""


class StopPlayback(_EdgeCommand, frozen=True, tag="StopPlayback"):
    call_id: str


class HangUp(_EdgeCommand, frozen=True, tag="HangUp"):
    """End the call (BYE) once queued prompts have played, unless ``now``."""

    call_id: str
    now: bool = False


class SendCheckSync(_EdgeCommand, frozen=True, tag="SendCheckSync"):
    """Send the vendor's re-fetch NOTIFY to every registered contact of ``desk``.

    ``event`` is the Event header value (``check-sync;reboot=false`` or ``resync``).
    """

    desk: str
    event: str
    reprovision_id: str


EdgeCommand = PlayPrompts | StopPlayback | HangUp | SendCheckSync
