"""Who sits at which desk, folded from the desk ledger events. Pure."""

from __future__ import annotations

from hotdesk_contracts.events import LedgerEvent, LoggedIn, LoggedOut, Roamed


class DeskSeats:
    """Desk -> seated user, from ``LoggedIn`` / ``LoggedOut`` / ``Roamed``.

    Several consumers may feed the same instance (the ledger follower and the
    reprovision trigger); each event is applied once, by its stream sequence, so the
    state only moves forward whoever sees an event first.
    """

    def __init__(self) -> None:
        self._users: dict[str, str] = {}
        self._seq: dict[str, int] = {}

    def apply(self, event: LedgerEvent, seq: int) -> bool:
        """Apply one event at stream sequence ``seq``; ``False`` if already applied."""
        if not isinstance(event, LoggedIn | LoggedOut | Roamed):
            return False
        if seq <= self._seq.get(event.desk, 0):
            return False
        self._seq[event.desk] = seq
        if isinstance(event, LoggedOut):
            self._users.pop(event.desk, None)
        else:
            self._users[event.desk] = event.user
        return True

    def user_at(self, desk: str) -> str | None:
        """The extension seated at ``desk``, ``None`` when it is idle."""
        return self._users.get(desk)

    def sequence(self, desk: str) -> int:
        """The last ledger sequence applied for ``desk`` (0: none)."""
        return self._seq.get(desk, 0)
