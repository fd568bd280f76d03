"""Where a new call goes: the dial-code table and the idle-desk policy, as pure code.

:func:`decide` takes the authenticated caller, the dialled user part, the directory and
the login map, and returns a :class:`Route` (what to ring) or a :class:`Refusal`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from hotdesk_contracts.dialplan import (
    Classification,
    Conflict,
    DeskCall,
    Emergency,
    External,
    Feature,
    Internal,
    Invalid,
    Login,
    Logout,
    classify,
)
from hotdesk_contracts.directory import Directory

from .login_state import LoginMap
from .sip.uri import UriError, parse_uri

IDLE_DESK_REASON = "Desk not logged in - only emergency calls allowed"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who places the call, as presented to the callee."""

    identity: str
    """The authenticated SIP user (``HD0001`` or ``101``)."""
    desk: str = ""
    """The desk the call comes from ('' for a user's own phone)."""
    user: str = ""
    """The user extension the call is presented as ('' for an idle desk)."""
    name: str = ""
    """The user's display name."""

    @property
    def party(self) -> str:
        """The caller as call-state events name it: the user, else the desk."""
        return self.user or self.desk or self.identity


@dataclass(frozen=True, slots=True)
class _Names:
    directory: Directory
    names: dict[str, str]
    """Extension number → display name."""
    desks: frozenset[str]


_names: _Names | None = None


def _names_of(directory: Directory) -> _Names:
    """The directory's names, indexed once per directory revision: a directory is
    replaced whole on reload, and scanning a thousand extensions per INVITE is not free."""
    global _names
    cached = _names
    if cached is None or cached.directory is not directory:
        cached = _names = _Names(
            directory,
            {e.number: e.name for e in directory.extensions},
            frozenset(d.name for d in directory.desks),
        )
    return cached


def caller_of(identity: str, directory: Directory, logins: LoginMap) -> Caller:
    """Resolve an authenticated identity to the caller presentation."""
    index = _names_of(directory)
    names = index.names
    if identity in index.desks:
        user = logins.user_at.get(identity, "")
        return Caller(identity, desk=identity, user=user, name=names.get(user, ""))
    return Caller(identity, user=identity, name=names.get(identity, ""))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Answer the INVITE with this final response."""

    status: int
    reason: str
    log: str = ""


@dataclass(frozen=True, slots=True)
class ToAor:
    """Ring the registered contacts of ``aor`` (a desk or an extension's own phone)."""

    aor: str
    callee: str
    """The callee as call-state events name it (the user extension, else the desk)."""
    callee_desk: str = ""


@dataclass(frozen=True, slots=True)
class ToTrunk:
    """Send the call to a trunk."""

    uri: str
    callee: str
    emergency: bool = False


@dataclass(frozen=True, slots=True)
class ToHotdesk:
    """A hot-desk code: the media/IVR path answers it."""

    classification: Login | Logout


Route = ToAor | ToTrunk | ToHotdesk
Decision = Route | Refusal


def emergency_trunk(directory: Directory) -> str | None:
    """The first trunk marked for emergency calls, if any."""
    for trunk in directory.trunks:
        if trunk.emergency:
            return trunk.uri
    return None


def is_logout_key(dialled: str, logout_key_uri: str) -> bool:
    """Whether the call came from the provisioned logout key: the key dials
    ``logout_key_uri`` (a user part or a full SIP URI); an empty setting means no key."""
    if not logout_key_uri:
        return False
    key = logout_key_uri
    with contextlib.suppress(UriError):
        if key.startswith(("sip:", "sips:")):
            key = parse_uri(key).user_unescaped()
    return dialled == key


def decide(
    caller: Caller,
    dialled: str,
    directory: Directory,
    logins: LoginMap,
    logout_key_uri: str = "",
) -> Decision:
    """Route a call from ``caller`` to ``dialled``.

    Dialling ``logout_key_uri`` (the provisioned logout key, when set) is a logout
    handed to the IVR like ``*77*5*``, also from an idle desk."""
    if is_logout_key(dialled, logout_key_uri):
        return ToHotdesk(Logout())
    kind: Classification = classify(dialled, directory)
    if isinstance(kind, Emergency):
        uri = emergency_trunk(directory)
        if uri is None:
            return Refusal(503, "Service Unavailable", "no emergency trunk configured")
        return ToTrunk(uri, kind.number, emergency=True)
    if isinstance(kind, Login | Logout):
        return ToHotdesk(kind)
    if isinstance(kind, Conflict):
        return Refusal(403, "Forbidden", "dial code conflict: " + ", ".join(kind.codes))
    if caller.desk and not caller.user:
        # The idle-desk policy: only emergency numbers and the hot-desk codes.
        return Refusal(403, IDLE_DESK_REASON)
    if isinstance(kind, Internal):
        desk = logins.desk_of.get(kind.ext, "")
        return ToAor(desk or kind.ext, kind.ext, callee_desk=desk)
    if isinstance(kind, DeskCall):
        user = logins.user_at.get(kind.desk, "")
        return ToAor(kind.desk, user or kind.desk, callee_desk=kind.desk)
    if isinstance(kind, External):
        for trunk in directory.trunks:
            if not trunk.emergency:
                return ToTrunk(trunk.uri, kind.number)
        return Refusal(503, "Service Unavailable", "no trunk configured")
    if isinstance(kind, Feature):
        return Refusal(480, "Temporarily Unavailable", f"feature {kind.name} not handled here")
    if isinstance(kind, Invalid):
        return Refusal(404, "Not Found")
    return Refusal(404, "Not Found")
