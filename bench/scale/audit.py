"""The ledger and the read models after a run: nothing lost, nothing twice, converged.

:func:`read_ledger` reads the whole ledger stream as it is now (a consistent snapshot,
see :mod:`hotdesk_ledger.snapshot`). :func:`audit_ledger` checks it on its own terms:
every ``Nats-Msg-Id`` and event id once, at most one login per IVR call (Call-ID),
and each desk's events a valid chain (a login only at an idle desk, a roam or logout
only from the user who sits there), which an event lost from the middle of a desk's
history or stored twice would break. :func:`read_model_differences` compares presence's
KV read models with the same projections folded over the ledger here, value and
``applied_seq`` per key, and with an independent fold of who sits where.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js import api as js_api

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import EventDecodeError, decode_event
from hotdesk_contracts.events import LedgerEvent, LoggedIn, LoggedOut, Roamed
from hotdesk_ledger.projection import Projection, subject_matches
from hotdesk_ledger.snapshot import SnapshotError, read_snapshot
from hotdesk_presence.projections import DeskSeat, DeskSeats, History, UserDirectory


@dataclass(frozen=True)
class Stored:
    """One ledger message."""

    seq: int
    subject: str
    msg_id: str
    event: LedgerEvent


@dataclass
class LedgerAudit:
    """What the ledger holds and what is wrong with it (empty lists: nothing)."""

    events: int
    logins_by_call: dict[str, list[int]]
    """IVR Call-ID -> stream sequences of its LoggedIn/Roamed events."""
    seated: dict[str, str | None]
    """Desk -> who sits there by the ledger's own chain (None: idle)."""
    undecodable: list[int] = field(default_factory=list)
    duplicate_msg_ids: list[str] = field(default_factory=list)
    duplicate_event_ids: list[str] = field(default_factory=list)
    calls_logged_in_twice: list[str] = field(default_factory=list)
    broken_chains: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.undecodable
            or self.duplicate_msg_ids
            or self.duplicate_event_ids
            or self.calls_logged_in_twice
            or self.broken_chains
        )

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "logins_with_a_call_id": sum(len(v) for v in self.logins_by_call.values()),
            "undecodable": len(self.undecodable),
            "duplicate_msg_ids": self.duplicate_msg_ids,
            "duplicate_event_ids": self.duplicate_event_ids,
            "calls_logged_in_twice": self.calls_logged_in_twice,
            "broken_desk_chains": self.broken_chains,
        }


async def read_ledger(js: JetStreamContext) -> tuple[list[Stored], list[int]]:
    """Every ledger message now, decoded, in stream order; and the sequences of those
    that do not decode."""
    msgs = await read_snapshot(js, streams.LEDGER.name, subjects.LEDGER_ALL, fetch_timeout=10)
    out: list[Stored] = []
    bad: list[int] = []
    for msg in msgs:
        seq = int(msg.metadata.sequence.stream)
        try:
            event = decode_event(msg.data)
        except EventDecodeError:
            bad.append(seq)
            continue
        msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
        out.append(Stored(seq, msg.subject, msg_id, event))
    return out, bad


def audit_ledger(stored: list[Stored], undecodable: list[int] | None = None) -> LedgerAudit:
    """Check the ledger's messages (see the module docstring)."""
    msg_ids = Counter(s.msg_id for s in stored)
    event_ids = Counter(s.event.event_id for s in stored)
    logins: dict[str, list[int]] = {}
    seated: dict[str, str | None] = {}
    broken: list[str] = []
    for s in stored:
        event = s.event
        if not isinstance(event, LoggedIn | Roamed | LoggedOut):
            continue
        here = seated.get(event.desk)
        if isinstance(event, LoggedIn):
            if here is not None:
                broken.append(
                    f"{event.desk} seq {s.seq}: LoggedIn {event.user} at a desk {here} holds"
                )
            seated[event.desk] = event.user
        elif isinstance(event, Roamed):
            if here != event.from_user:
                broken.append(
                    f"{event.desk} seq {s.seq}: Roamed from {event.from_user} but {here} sits there"
                )
            seated[event.desk] = event.user
        else:
            if here != event.user:
                broken.append(
                    f"{event.desk} seq {s.seq}: LoggedOut {event.user} but {here} sits there"
                )
            seated[event.desk] = None
        if isinstance(event, LoggedIn | Roamed) and event.cause.call_id:
            logins.setdefault(event.cause.call_id, []).append(s.seq)
    return LedgerAudit(
        events=len(stored),
        logins_by_call=logins,
        seated=seated,
        undecodable=list(undecodable or []),
        duplicate_msg_ids=sorted(m for m, n in msg_ids.items() if n > 1 or not m),
        duplicate_event_ids=sorted(e for e, n in event_ids.items() if n > 1),
        calls_logged_in_twice=sorted(c for c, seqs in logins.items() if len(seqs) > 1),
        broken_chains=broken,
    )


def expected_model(projection: Projection[Any], stored: list[Stored]) -> dict[str, tuple[int, Any]]:
    """Key -> (applied_seq, value) that the projection's runner must have written:
    the projection folded over the events it reads, as the runner folds them."""
    model: dict[str, tuple[int, Any]] = {}
    for s in stored:
        if not any(subject_matches(s.subject, f) for f in projection.filter_subjects):
            continue
        for key in projection.keys(s.event):
            current = model.get(key, (0, None))[1]
            model[key] = (s.seq, projection.apply(key, current, s.event, s.seq))
    return model


class _KvStored(msgspec.Struct):
    applied_seq: int
    value: Any = None


async def stored_model(js: JetStreamContext, bucket: str) -> dict[str, tuple[int, Any]]:
    """Key -> (applied_seq, raw value) of a read model's KV bucket, one snapshot."""
    prefix = f"$KV.{bucket}."
    msgs = await read_snapshot(
        js, f"KV_{bucket}", prefix + ">", js_api.DeliverPolicy.LAST_PER_SUBJECT, fetch_timeout=10
    )
    out: dict[str, tuple[int, Any]] = {}
    for msg in msgs:
        if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
            continue
        if not msg.data:
            continue
        entry = msgspec.json.decode(msg.data, type=_KvStored)
        out[msg.subject[len(prefix) :]] = (entry.applied_seq, entry.value)
    return out


def _shown(value: Any, limit: int = 400) -> str:
    """A read-model value as JSON, cut short."""
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[:limit] + "..."


async def read_model_differences(js: JetStreamContext, stored: list[Stored]) -> list[str]:
    """Where presence's read models differ from the ledger folded here (empty: none)."""
    differences: list[str] = []
    for projection in (DeskSeats(), UserDirectory(), History()):
        want = expected_model(projection, stored)
        have = await stored_model(js, projection.bucket)
        for key in sorted(set(want) | set(have)):
            if key not in have:
                differences.append(f"{projection.name} {key}: missing (ledger seq {want[key][0]})")
                continue
            if key not in want:
                differences.append(f"{projection.name} {key}: not in the ledger")
                continue
            want_seq, want_value = want[key]
            have_seq, have_raw = have[key]
            have_value = (
                None if have_raw is None else msgspec.convert(have_raw, projection.value_type)
            )
            if have_seq != want_seq or have_value != want_value:
                differences.append(
                    f"{projection.name} {key}: applied_seq {have_seq} (ledger {want_seq}),"
                    + (
                        " value equal"
                        if have_value == want_value
                        else f" value {_shown(have_value)}, ledger folded {_shown(want_value)}"
                    )
                )
    # Independently of the projections' own code: who sits where, by the desks' chains.
    desks = await stored_model(js, streams.DESKS.bucket)
    for desk, user in audit_ledger(stored).seated.items():
        raw = desks.get(desk, (0, None))[1]
        seat = None if raw is None else msgspec.convert(raw, DeskSeat)
        if (seat.user if seat is not None else None) != user:
            differences.append(f"desk {desk}: read model seats {seat and seat.user}, ledger {user}")
    return differences


async def converged(js: JetStreamContext, timeout: float) -> tuple[list[Stored], list[str], float]:
    """Wait until the read models equal the ledger (or ``timeout``): the ledger as last
    read, the differences left and the seconds it took. A runner that died holding a
    batch leaves it to be redelivered after the consumer's ack wait (30 s), so this can
    take that long."""
    started = time.monotonic()
    stored: list[Stored] = []
    while True:
        try:
            stored, _ = await read_ledger(js)
            differences = await read_model_differences(js, stored)
        except (NatsError, TimeoutError, SnapshotError) as exc:
            differences = [f"not readable: {exc!r}"]
        waited = time.monotonic() - started
        if not differences or waited > timeout:
            return stored, differences, waited
        await asyncio.sleep(0.5)
