"""Who sits at which desk, as the edge routes by it.

:class:`LoginMap` is a pure fold over the desk ledger events; :class:`LedgerFollower`
feeds it from an ordered JetStream consumer on ``hotdesk.ledger.desk.*`` (deliver all,
from the start), so a login takes effect at the edge the moment its event is written.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import decode_event
from hotdesk_contracts.events import LoggedIn, LoggedOut, Roamed

log = logging.getLogger("hotdesk.sip_edge.login_state")


class LoginMap:
    """desk → user and user → desk."""

    def __init__(self) -> None:
        self.user_at: dict[str, str] = {}
        self.desk_of: dict[str, str] = {}

    def apply(self, event: object) -> None:
        """Fold one ledger event in (events of other types are ignored)."""
        if isinstance(event, LoggedIn | Roamed):
            self._leave(event.desk)
            previous = self.desk_of.get(event.user)
            if previous is not None and previous != event.desk:
                # Policies.exclusive: the user left the other desk.
                self.user_at.pop(previous, None)
            self.user_at[event.desk] = event.user
            self.desk_of[event.user] = event.desk
        elif isinstance(event, LoggedOut):
            self._leave(event.desk)

    def _leave(self, desk: str) -> None:
        user = self.user_at.pop(desk, None)
        if user is not None and self.desk_of.get(user) == desk:
            del self.desk_of[user]


class LedgerFollower:
    """Keeps a :class:`LoginMap` current from the ledger stream."""

    def __init__(self, js: JetStreamContext, logins: LoginMap) -> None:
        self._js = js
        self.logins = logins
        self.caught_up = asyncio.Event()
        self.applied = 0
        """The stream sequence of the last ledger message applied (for its lag)."""
        self._sub: object | None = None

    async def start(self) -> None:
        """Subscribe (ordered consumer, deliver all) and apply events as they come."""
        info = await self._js.stream_info(
            streams.LEDGER.name, subjects_filter=subjects.LEDGER_DESKS
        )
        if not info.state.subjects:
            self.caught_up.set()

        async def on_message(msg: Msg) -> None:
            try:
                self.logins.apply(decode_event(msg.data))
            except Exception:
                log.warning("undecodable ledger event skipped")
            metadata = msg.metadata
            self.applied = metadata.sequence.stream
            if metadata.num_pending == 0:
                self.caught_up.set()

        self._sub = await self._js.subscribe(
            subjects.LEDGER_DESKS,
            stream=streams.LEDGER.name,
            ordered_consumer=True,
            deliver_policy=None,
            cb=on_message,
        )

    async def stop(self) -> None:
        """Unsubscribe."""
        sub = self._sub
        if sub is not None:
            await sub.unsubscribe()  # type: ignore[attr-defined]
