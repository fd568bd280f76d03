"""A client transaction the edge's own requests can await (check-sync and BLF NOTIFYs).

The edge runs the transaction's timers and feeds it responses as for any other; this
subclass also resolves a future with the final status, or 0 when Timer F fires
(RFC 3261 §17.1.2.2), so the request's sender learns how it ended.
"""

from __future__ import annotations

import asyncio

from .sip.transaction import Action, ClientTransaction, TimedOut


class AwaitedTransaction(ClientTransaction):
    """A non-INVITE client transaction whose final status can be awaited
    (0 when Timer F fires first)."""

    def __init__(self, request: bytes, method: str, now: float, *, reliable: bool) -> None:
        super().__init__(request, method, now, reliable=reliable)
        self.final: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def receive(self, status: int, now: float) -> bool:
        fresh = super().receive(status, now)
        if fresh and status >= 200 and not self.final.done():
            self.final.set_result(status)
        return fresh

    def fire(self, now: float) -> list[Action]:
        actions = super().fire(now)
        if any(isinstance(a, TimedOut) for a in actions) and not self.final.done():
            self.final.set_result(0)
        return actions
