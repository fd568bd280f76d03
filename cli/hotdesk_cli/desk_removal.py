"""Logging out a desk's user when the desk leaves the directory.

The directory owner (``hotdesk_runtime.directory.DirectoryOwner``) calls this hook for
each removed desk; the ledger decides whether anyone sits there.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from nats.js import JetStreamContext

from hotdesk_contracts.commands import LogOut
from hotdesk_contracts.events import Cause, LogoutReason
from hotdesk_ledger.errors import DeskIdle
from hotdesk_ledger.handler import Ledger
from hotdesk_ledger.store import EventStore
from hotdesk_runtime.directory import DeskRemovedHook

log = logging.getLogger("hotdesk.directory")

ACTOR = "system:directory"


def logout_removed_desk(js: JetStreamContext) -> DeskRemovedHook:
    """A hook appending ``LoggedOut(reason=desk_removed)`` if someone sits at the desk."""
    ledger = Ledger(EventStore(js))

    async def hook(desk: str) -> None:
        correlation = uuid.uuid4().hex
        command = LogOut(
            command_id=f"desk-removed-{desk}-{correlation}",
            at=datetime.now(UTC),
            cause=Cause(actor=ACTOR),
            correlation_id=correlation,
            desk=desk,
            reason=LogoutReason.DESK_REMOVED,
        )
        try:
            await ledger.execute(command)
        except DeskIdle:
            return
        log.info("removed desk logged out", extra={"desk": desk})

    return hook
