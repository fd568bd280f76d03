"""Presence read models as pure folds.

Ledger projections (run by ``hotdesk_ledger.projection.ProjectionRunner``):
:class:`DeskSeats`, :class:`UserDirectory`, :class:`History`. Bus folds (run by
:class:`BusProjectionRunner`): :class:`DeskStatusFold`, :class:`BlfStates`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .blf import BlfDialog, BlfState, BlfStates
from .bus import BusFold, BusProjectionRunner, BusStored, bus_fold
from .desks import DESK_STATUS_BUCKET, DeskSeat, DeskSeats, DeskStatus, DeskStatusFold
from .history import History, HistoryEntry, HistoryLog, desk_key, user_key
from .users import UserDirectory, UserRecord

PROJECTIONS: dict[str, Callable[[], Any]] = {
    "presence-desks": DeskSeats,
    "presence-users": UserDirectory,
    "presence-history": History,
}
"""Ledger projections by name (``hotdesk rebuild <name>``)."""

__all__ = [
    "DESK_STATUS_BUCKET",
    "PROJECTIONS",
    "BlfDialog",
    "BlfState",
    "BlfStates",
    "BusFold",
    "BusProjectionRunner",
    "BusStored",
    "DeskSeat",
    "DeskSeats",
    "DeskStatus",
    "DeskStatusFold",
    "History",
    "HistoryEntry",
    "HistoryLog",
    "UserDirectory",
    "UserRecord",
    "bus_fold",
    "desk_key",
    "user_key",
]
