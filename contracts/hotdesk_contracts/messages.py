"""Events the SIP edge publishes (not ledger events: these describe calls and phones).

They are published on core NATS subjects from :mod:`.subjects` and, where a consumer
must not miss them, captured by the ``HOTDESK_EDGE`` stream (see :mod:`.streams`).
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec


class _BusEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    at: datetime
    origin: str
    """The service instance that published it (for the edge: the one holding the call)."""
    trace: dict[str, str] = {}


class FeatureDialled(_BusEvent, frozen=True, tag="FeatureDialled"):
    """The edge answered a call to a hot-desk code and hands it to the IVR.

    ``feature`` is ``login`` (``argument`` = the extension) or ``logout``; ``caller``
    is the authenticated desk (``HD0001``) or extension; ``via_key`` is true when the
    edge could tell that the phone's logout key placed the call.
    """

    call_id: str
    caller: str
    dialled: str
    feature: str
    argument: str = ""
    via_key: bool = False


class DtmfReceived(_BusEvent, frozen=True, tag="DtmfReceived"):
    """One DTMF digit (``0-9``, ``*``, ``#``, ``A-D``), from RFC 4733 or SIP INFO."""

    call_id: str
    digit: str
    source: str
    """``rfc4733`` or ``info``."""
    seq: int = 0
    """Per-call digit counter, so the IVR can spot a gap or a duplicate."""


class PromptsPlayed(_BusEvent, frozen=True, tag="PromptsPlayed"):
    """A ``PlayPrompts`` finished (``completed``) or was cut short (``interrupted``)."""

    call_id: str
    play_id: str
    completed: bool
    missing: list[str] = []
    """Prompt ids that were not found and replaced by the "file not found" prompt."""


class CallEnded(_BusEvent, frozen=True, tag="CallEnded"):
    """A call the edge answered is over. ``reason``: ``bye``, ``hangup``, ``media-timeout``,
    ``cancel``, ``error``; ``gone`` when an IVR sent a command for a call the edge no
    longer has (it ended before the IVR claimed it)."""

    call_id: str
    reason: str


class CallPhase(enum.StrEnum):
    TRYING = "trying"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class CallStateChanged(_BusEvent, frozen=True, tag="CallStateChanged"):
    """A routed call changed phase. Parties are user extensions where a user sits at
    the desk, and desks where they do not; presence turns these into BLF states.

    Published once per party, on that party's call-state subject. ``from_tag`` is the
    caller's tag; ``to_tag`` the callee's, from the first 180/183 carrying one (so the
    early and confirmed dialog keep one id) and from the 2xx once answered."""

    call_id: str
    phase: CallPhase
    caller: str
    callee: str
    caller_desk: str = ""
    callee_desk: str = ""
    from_tag: str = ""
    to_tag: str = ""


class RegistrationChanged(_BusEvent, frozen=True, tag="RegistrationChanged"):
    """A binding was added, refreshed, removed, or expired for an address-of-record.

    ``aor`` is the user part (``HD0001``, ``101``); ``contacts`` are the live contacts
    after the change; ``user_agent`` as the phone sent it.
    """

    aor: str
    kind: str
    """``registered``, ``refreshed``, ``unregistered``, ``expired``."""
    contacts: list[str]
    user_agent: str = ""
    source: str = ""


class ReprovisionConfirmed(_BusEvent, frozen=True, tag="ReprovisionConfirmed"):
    """The desk answered the NOTIFY, fetched the new config and re-registered."""

    desk: str
    reprovision_id: str
    config_version: str
    attempts: int


class ReprovisionFailed(_BusEvent, frozen=True, tag="ReprovisionFailed"):
    """The desk did not complete a reprovision after every retry."""

    desk: str
    reprovision_id: str
    config_version: str
    attempts: int
    stage: str
    """The stage it got stuck at: ``notify``, ``fetch`` or ``register``."""


class CheckSyncResult(_BusEvent, frozen=True, tag="CheckSyncResult"):
    """The edge sent a check-sync NOTIFY; ``status`` is the phone's final answer (0 for
    a timeout or no contact)."""

    desk: str
    reprovision_id: str
    status: int
    contacts: int


class ConfigServed(_BusEvent, frozen=True, tag="ConfigServed"):
    """A provisioning server replica served a desk's config file at ``config_version``.

    Published on core NATS (not stored) so the replica tracking that desk's reprovision
    learns of a fetch that another replica answered."""

    desk: str
    config_version: str
    filename: str


class UnknownDeviceSeen(_BusEvent, frozen=True, tag="UnknownDeviceSeen"):
    """A phone asked the provisioning server for a file it has no desk for."""

    mac: str
    user_agent: str
    address: str
    path: str


EdgeEvent = (
    FeatureDialled
    | DtmfReceived
    | PromptsPlayed
    | CallEnded
    | CallStateChanged
    | RegistrationChanged
    | CheckSyncResult
)
ProvisioningEvent = ReprovisionConfirmed | ReprovisionFailed | UnknownDeviceSeen
