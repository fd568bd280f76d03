"""Tracking one reprovision per desk, confirmed rather than assumed. Pure: ``now`` is
passed in, the tracker returns what to do and the service does it.

A reprovision goes NOTIFY answered (2xx) -> the new config version fetched -> the desk
re-registered -> confirmed. A stage that does not complete within the stage timeout is
retried from the NOTIFY after an exponential backoff, ``retries`` times; then it fails,
naming the stage it got stuck at. A desk with no registered contact is offline: its
reprovision waits, without using up attempts, until the desk registers again.

A reprovision remembers the trace it was started in (a W3C ``traceparent``, opaque
here) and hands it on with every action, so each NOTIFY, the phone's fetch and the
outcome belong to the trace of the login that caused them, whichever replica acts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Stage(enum.StrEnum):
    NOTIFY = "notify"
    """Check-sync NOTIFY sent, waiting for the phone's answer."""
    FETCH = "fetch"
    """The phone answered 2xx: waiting for it to fetch the new config version."""
    REGISTER = "register"
    """Fetched: waiting for the phone to register again with its new config."""
    OFFLINE = "offline"
    """No registered contact: wait for the desk to register."""
    BACKOFF = "backoff"
    """A stage timed out or failed; the next attempt starts at ``deadline``."""


@dataclass(frozen=True, slots=True)
class SendNotify:
    """Ask the edge to send the re-fetch NOTIFY to the desk's contacts."""

    desk: str
    event: str
    reprovision_id: str
    attempt: int
    trace: str = ""
    """The reprovision's trace (``traceparent``), for the NOTIFY's span."""


@dataclass(frozen=True, slots=True)
class Confirmed:
    desk: str
    reprovision_id: str
    config_version: str
    attempts: int
    trace: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    desk: str
    reprovision_id: str
    config_version: str
    attempts: int
    stage: str
    """``notify``, ``fetch`` or ``register``."""
    trace: str = ""


Action = SendNotify | Confirmed | Failed


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    retries: int = 3
    retry_backoff_seconds: float = 5.0
    stage_timeout_seconds: float = 30.0


@dataclass(slots=True)
class Reprovision:
    """One desk's reprovision in flight."""

    desk: str
    reprovision_id: str
    config_version: str
    """The version the phone must fetch; empty: any version of the desk's files."""
    notify_event: str
    attempt: int
    stage: Stage
    deadline: float | None
    failed_stage: Stage = Stage.NOTIFY
    trace: str = ""
    """W3C ``traceparent`` of the span that started it ("": none)."""


class ReprovisionTracker:
    """Every desk's current reprovision; a newer one for a desk replaces the older."""

    def __init__(self, settings: TrackerSettings) -> None:
        self.settings = settings
        self._active: dict[str, Reprovision] = {}

    def get(self, desk: str) -> Reprovision | None:
        """The desk's reprovision in flight, if any."""
        return self._active.get(desk)

    def restore(self, reprovision: Reprovision) -> None:
        """Take over a reprovision in flight (saved by this or another replica)."""
        self._active[reprovision.desk] = reprovision

    def start(
        self,
        desk: str,
        reprovision_id: str,
        config_version: str,
        notify_event: str,
        now: float,
        *,
        trace: str = "",
    ) -> list[Action]:
        """Begin reprovisioning ``desk`` to ``config_version`` (superseding any other);
        ``trace`` is the ``traceparent`` its actions carry."""
        self._active[desk] = Reprovision(
            desk=desk,
            reprovision_id=reprovision_id,
            config_version=config_version,
            notify_event=notify_event,
            attempt=0,
            stage=Stage.NOTIFY,
            deadline=None,
            trace=trace,
        )
        return self._attempt(self._active[desk], now)

    def notify_answered(
        self, desk: str, reprovision_id: str, status: int, contacts: int, now: float
    ) -> list[Action]:
        """The edge's answer to a ``SendNotify``: the phone's final status, how many
        contacts it tried (0: the desk is not registered anywhere)."""
        current = self._current(desk, reprovision_id)
        if current is None or current.stage is not Stage.NOTIFY:
            return []
        if contacts == 0:
            current.stage, current.deadline = Stage.OFFLINE, None
            return []
        if 200 <= status < 300:
            current.stage = Stage.FETCH
            current.deadline = now + self.settings.stage_timeout_seconds
            return []
        return self._stuck(current, Stage.NOTIFY, now)

    def fetched(
        self, desk: str, config_version: str, now: float, *, newest: str = ""
    ) -> list[Action]:
        """The desk fetched its files at ``config_version`` over HTTP.

        ``newest`` is the version the desk's files render to now: a fetch of it counts
        even if the reprovision was started for an older one (the directory or the
        seat changed again while it was in flight; the phone has the latest).
        """
        current = self._active.get(desk)
        if current is None or current.stage is Stage.REGISTER:
            return []
        wanted = {current.config_version, newest} - {""}
        if current.config_version and config_version not in wanted:
            return []
        # A fetch may overtake the NOTIFY answer, or come from a desk that just booted.
        current.stage = Stage.REGISTER
        current.deadline = now + self.settings.stage_timeout_seconds
        return []

    def registered(self, desk: str, now: float) -> list[Action]:
        """The desk (re-)registered with at least one contact."""
        current = self._active.get(desk)
        if current is None:
            return []
        if current.stage is Stage.REGISTER:
            del self._active[desk]
            return [
                Confirmed(
                    desk,
                    current.reprovision_id,
                    current.config_version,
                    current.attempt,
                    current.trace,
                )
            ]
        if current.stage is Stage.OFFLINE:
            return self._send(current, now)
        return []

    def tick(self, now: float) -> list[Action]:
        """Handle every deadline that has passed."""
        actions: list[Action] = []
        for current in list(self._active.values()):
            if current.deadline is None or current.deadline > now:
                continue
            if current.stage is Stage.BACKOFF:
                actions += self._attempt(current, now)
            else:
                actions += self._stuck(current, current.stage, now)
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do."""
        deadlines = [r.deadline for r in self._active.values() if r.deadline is not None]
        return min(deadlines) if deadlines else None

    def _current(self, desk: str, reprovision_id: str) -> Reprovision | None:
        current = self._active.get(desk)
        if current is None or current.reprovision_id != reprovision_id:
            return None
        return current

    def _attempt(self, current: Reprovision, now: float) -> list[Action]:
        current.attempt += 1
        return self._send(current, now)

    def _send(self, current: Reprovision, now: float) -> list[Action]:
        current.stage = Stage.NOTIFY
        current.deadline = now + self.settings.stage_timeout_seconds
        return [
            SendNotify(
                current.desk,
                current.notify_event,
                current.reprovision_id,
                current.attempt,
                current.trace,
            )
        ]

    def _stuck(self, current: Reprovision, stage: Stage, now: float) -> list[Action]:
        if current.attempt > self.settings.retries:
            del self._active[current.desk]
            return [
                Failed(
                    current.desk,
                    current.reprovision_id,
                    current.config_version,
                    current.attempt,
                    stage.value,
                    current.trace,
                )
            ]
        current.failed_stage = stage
        current.stage = Stage.BACKOFF
        backoff = self.settings.retry_backoff_seconds * 2 ** (current.attempt - 1)
        current.deadline = now + backoff
        return []
