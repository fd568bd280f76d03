"""SIP transactions (RFC 3261 §17) as pure state machines.

Each transaction is driven by ``(message, now)`` and by ``fire(now)`` when its
``deadline`` passes; it never touches a socket or a clock. What it wants done comes
back as :class:`Send` (bytes to retransmit) and :class:`TimedOut` actions; the edge
performs them. Over reliable transports the retransmission timers are not used
(§17.1.1.2, §17.1.2.2) and the wait timers are zero.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

T1 = 0.5
"""RTT estimate (RFC 3261 §17.1.1.1)."""
T2 = 4.0
"""Maximum retransmit interval for non-INVITE requests and INVITE responses."""
T4 = 5.0
"""Maximum time a message stays in the network."""


class State(enum.Enum):
    """Transaction states of RFC 3261 Figures 5-8."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    ACCEPTED = "accepted"
    """RFC 6026 §7.1: an INVITE server transaction after a 2xx, absorbing
    retransmissions of the INVITE until Timer L."""
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Send:
    """Retransmit these bytes to the transaction's peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B or F fired: the client transaction failed (the TU answers 408)."""


Action = Send | TimedOut


class ClientTransaction:
    """A client transaction (RFC 3261 §17.1): INVITE (Figure 5) or non-INVITE (Figure 6).

    Created when the request is first sent at ``now``.
    """

    def __init__(self, request: bytes, method: str, now: float, *, reliable: bool) -> None:
        self.request = request
        self.invite = method == "INVITE"
        self.reliable = reliable
        self.state = State.CALLING if self.invite else State.TRYING
        self._interval = T1
        self._retransmit_at: float | None = None if reliable else now + T1  # Timer A / E
        self._timeout_at: float | None = now + 64 * T1  # Timer B / F
        self._end_at: float | None = None  # Timer D / K

    @property
    def deadline(self) -> float | None:
        """When :meth:`fire` must next be called (None: nothing pending)."""
        times = [t for t in (self._retransmit_at, self._timeout_at, self._end_at) if t is not None]
        return min(times) if times else None

    def fire(self, now: float) -> list[Action]:
        """Run the timers due at ``now``."""
        actions: list[Action] = []
        if self._end_at is not None and now >= self._end_at:
            self.state = State.TERMINATED
            self._end_at = None
            return actions
        if self._timeout_at is not None and now >= self._timeout_at:
            self.state = State.TERMINATED
            self._timeout_at = self._retransmit_at = None
            return [TimedOut()]
        if self._retransmit_at is not None and now >= self._retransmit_at:
            actions.append(Send(self.request))
            # Timer A doubles without bound; Timer E is capped at T2 (§17.1.2.2), and in
            # Proceeding a non-INVITE retransmits every T2.
            if self.invite:
                self._interval *= 2
            else:
                self._interval = (
                    T2 if self.state is State.PROCEEDING else min(self._interval * 2, T2)
                )
            self._retransmit_at = now + self._interval
        return actions

    def receive(self, status: int, now: float) -> bool:
        """A response arrived; True when the TU should see it (not a retransmission)."""
        if self.state is State.TERMINATED:
            return False
        if status < 200:
            if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                self.state = State.PROCEEDING
                if self.invite:
                    self._retransmit_at = None  # Timer A stops on a provisional (§17.1.1.2)
                return True
            return False
        if self.state is State.COMPLETED:
            return False  # a retransmitted final response; the ACK is re-sent by the TU
        self._retransmit_at = None
        self._timeout_at = None
        if self.invite and status < 300:
            self.state = State.TERMINATED  # 2xx goes straight to the TU (§17.1.1.2)
        else:
            self.state = State.COMPLETED
            # Timer D (≥32 s for INVITE over UDP) / Timer K (T4 for non-INVITE).
            wait = (32.0 if self.invite else T4) if not self.reliable else 0.0
            self._end_at = now + wait
        return True


class ServerTransaction:
    """A server transaction (RFC 3261 §17.2): INVITE (Figure 7) or non-INVITE (Figure 8).

    Retransmitted requests are answered from here with the last response sent.
    """

    # A registrar holds one per request for Timer J (32 s over UDP): tens of thousands
    # at a time, each one object for the garbage collector to walk instead of two.
    __slots__ = (
        "_end_at",
        "_interval",
        "_retransmit_at",
        "_timeout_at",
        "created",
        "invite",
        "last_response",
        "reliable",
        "state",
    )

    def __init__(self, method: str, now: float, *, reliable: bool) -> None:
        self.invite = method == "INVITE"
        self.reliable = reliable
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.last_response: bytes | None = None
        self._interval = T1
        self._retransmit_at: float | None = None  # Timer G
        self._timeout_at: float | None = None  # Timer H
        self._end_at: float | None = None  # Timer I / J
        self.created = now

    @property
    def deadline(self) -> float | None:
        """When :meth:`fire` must next be called."""
        soonest = self._end_at
        for at in (self._retransmit_at, self._timeout_at):
            if at is not None and (soonest is None or at < soonest):
                soonest = at
        return soonest

    def respond(self, status: int, data: bytes, now: float) -> None:
        """The TU sends a response (already on the wire; remembered for retransmissions)."""
        if self.state is State.ACCEPTED and 200 <= status < 300:
            self.last_response = data  # a 2xx retransmission passing through
            return
        if self.state in (State.COMPLETED, State.ACCEPTED, State.CONFIRMED, State.TERMINATED):
            return
        self.last_response = data
        if status < 200:
            self.state = State.PROCEEDING
            return
        if self.invite and status < 300:
            # 2xx: the UAS end to end owns retransmissions (§17.2.1); the transaction
            # stays to absorb INVITE retransmissions until Timer L (RFC 6026 §8.7).
            self.state = State.ACCEPTED
            self._end_at = now + 64 * T1
            return
        self.state = State.COMPLETED
        if self.invite:
            if not self.reliable:
                self._retransmit_at = now + T1
            self._timeout_at = now + 64 * T1
        else:
            self._end_at = now + (0.0 if self.reliable else 64 * T1)

    def retransmission(self) -> bytes | None:
        """The request came again: the bytes to answer it with (None: absorb it)."""
        if self.state in (State.TRYING, State.ACCEPTED):
            return None
        if self.state in (State.PROCEEDING, State.COMPLETED):
            return self.last_response
        return None

    def ack(self, now: float) -> None:
        """An ACK matched this INVITE transaction's non-2xx final response (§17.2.1)."""
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._retransmit_at = self._timeout_at = None
            self._end_at = now + (0.0 if self.reliable else T4)  # Timer I

    def fire(self, now: float) -> list[Action]:
        """Run the timers due at ``now``."""
        if self._end_at is not None and now >= self._end_at:
            self.state = State.TERMINATED
            self._end_at = None
            return []
        if self._timeout_at is not None and now >= self._timeout_at:
            # Timer H: the ACK never came.
            self.state = State.TERMINATED
            self._timeout_at = self._retransmit_at = None
            return [TimedOut()]
        if self._retransmit_at is not None and now >= self._retransmit_at and self.last_response:
            self._interval = min(self._interval * 2, T2)
            self._retransmit_at = now + self._interval
            return [Send(self.last_response)]
        return []


def server_key(branch: str | None, sent_by: str, method: str) -> tuple[str, str, str]:
    """The server transaction key (RFC 3261 §17.2.3): branch, sent-by, and the method
    with ACK and CANCEL kept apart from INVITE's own transaction."""
    return (branch or "", sent_by, "INVITE" if method == "ACK" else method)
