"""BLF: the dialog state of every extension, for the edge's dialog-info NOTIFYs.

The edge reports call phases with the parties already mapped to the user's extension
where a user sits at the desk (see ``CallStateChanged``), so keying on ``caller`` and
``callee`` keeps a user's lamp on their extension whichever desk they are at. States
follow RFC 4235 section 3.7.1 (``early`` covers trying and ringing, as the lamps do);
``version`` increases on every change because a subscriber must see a higher version
in each NOTIFY (RFC 4235 section 4.1).

The edge publishes each call-state event once per party, on ``edge_call_state(party)``;
a copy changes only the party its subject names, so each party's value is written at
most once per call phase (one version step), however the copies interleave with other
calls and whether they are delivered live, redelivered or replayed from the start of
the stream.

A dialog keeps one id from early to terminated (RFC 4235 section 4.1.1), and the edge
builds it from the Call-ID and the local tag. The caller's side has its From-tag from
the start; the callee's side is a dialog once the callee's phone answered the INVITE
with a To-tag (the first 18x with one, or the 2xx). Until then (trying, or a 18x
without a tag) the callee's copy changes nothing: its lamp starts with the ringing,
already with the tag a directed pickup needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.messages import CallPhase, CallStateChanged
from hotdesk_contracts.subjects import SubjectTokenError

_STATE_OF_PHASE = {
    CallPhase.TRYING: "early",
    CallPhase.RINGING: "early",
    CallPhase.ANSWERED: "confirmed",
    CallPhase.ENDED: "terminated",
}
_RANK = {"terminated": 0, "early": 1, "confirmed": 2}
_EARLY = (CallPhase.TRYING, CallPhase.RINGING)


class BlfDialog(msgspec.Struct, frozen=True, kw_only=True):
    """One dialog of an extension, from that extension's side."""

    call_id: str
    state: str
    """``early``, ``confirmed`` or ``terminated``."""
    direction: str
    """``initiator`` (the extension called) or ``recipient`` (it was called)."""
    local_tag: str = ""
    remote_tag: str = ""
    remote: str = ""
    """The other party (extension or desk)."""
    desk: str = ""
    """The desk the extension's side of the call is on, if known."""


class BlfState(msgspec.Struct, frozen=True, kw_only=True):
    """An extension's lamp: ``idle`` before any call, then the most active dialog."""

    ext: str
    version: int = 0
    state: str = "idle"
    """``idle``, ``early``, ``confirmed`` or ``terminated``."""
    call_id: str = ""
    direction: str = ""
    local_tag: str = ""
    remote_tag: str = ""
    remote: str = ""
    active: list[BlfDialog] = []
    """Dialogs not yet terminated (a user may hold one call and take another)."""
    changed_at: datetime | None = None
    """When the last call-state change happened (auto-logout's idle clock)."""


def _side(event: CallStateChanged, key: str) -> BlfDialog:
    caller_side = key == event.caller
    return BlfDialog(
        call_id=event.call_id,
        state=_STATE_OF_PHASE[event.phase],
        direction="initiator" if caller_side else "recipient",
        local_tag=event.from_tag if caller_side else event.to_tag,
        remote_tag=event.to_tag if caller_side else event.from_tag,
        remote=event.callee if caller_side else event.caller,
        desk=event.caller_desk if caller_side else event.callee_desk,
    )


def _names(subject: str, party: str) -> bool:
    if not party:
        return False
    try:
        return subject == subjects.edge_call_state(party)
    except SubjectTokenError:
        return False  # no subject names such a party


class BlfStates:
    """Bus projection ``presence-blf``: extension -> :class:`BlfState`."""

    value_type = BlfState
    event_type = CallStateChanged

    def __init__(self, name: str = "presence-blf", bucket: str = streams.BLF.bucket) -> None:
        self.name = name
        self.bucket = bucket
        self.sources: Sequence[tuple[str, str]] = [
            (streams.EDGE.name, subjects.EDGE_CALL_STATE_ALL)
        ]

    def keys(self, event: CallStateChanged, subject: str) -> Sequence[str]:
        """The party whose copy of the event this is (the one ``subject`` names); the
        other party's copy, on its own subject, updates that party. A call to oneself
        is published once and changes its one party once. The callee's copy changes
        nothing while the callee's side has no To-tag and so no dialog yet."""
        if event.callee != event.caller and _names(subject, event.callee):
            tagless_early = event.phase in _EARLY and not event.to_tag
            return [] if tagless_early else [event.callee]
        return [event.caller] if _names(subject, event.caller) else []

    def apply(
        self, key: str, current: BlfState | None, event: CallStateChanged, seq: int
    ) -> BlfState | None:
        """Update the extension's dialogs and pick the one its lamp shows."""
        cur = current or BlfState(ext=key)
        dialog = _side(event, key)
        others = [d for d in cur.active if d.call_id != event.call_id]
        active = others if dialog.state == "terminated" else [*others, dialog]
        # The lamp shows the most active dialog; with none left, the one just ended.
        shown = max(active, key=lambda d: _RANK[d.state]) if active else dialog
        return BlfState(
            ext=key,
            version=cur.version + 1,
            state=shown.state,
            call_id=shown.call_id,
            direction=shown.direction,
            local_tag=shown.local_tag,
            remote_tag=shown.remote_tag,
            remote=shown.remote,
            active=active,
            changed_at=event.at,
        )
