"""The vendor plugins, and detection of the phone behind a provisioning request."""

from __future__ import annotations

from .base import Detection, FileRole, Key, RenderContext, SipServer, VendorPlugin
from .cisco import PLUGIN as CISCO
from .fanvil import PLUGIN as FANVIL
from .grandstream import PLUGIN as GRANDSTREAM
from .poly import PLUGIN as POLY
from .snom import PLUGIN as SNOM
from .yealink import PLUGIN as YEALINK

PLUGINS: dict[str, VendorPlugin] = {
    plugin.name: plugin for plugin in (YEALINK, POLY, SNOM, GRANDSTREAM, FANVIL, CISCO)
}
"""Every vendor by its config name (``Desk.vendor``)."""

DEFAULT_NOTIFY_EVENT = "check-sync;reboot=false"
"""For a desk whose vendor is neither configured nor seen yet."""


class UnknownVendorError(LookupError):
    """A vendor name no plugin is registered for."""


def plugin(vendor: str) -> VendorPlugin:
    """The plugin for ``vendor`` (``yealink``, ``poly``, …)."""
    try:
        return PLUGINS[vendor]
    except KeyError:
        raise UnknownVendorError(
            f"unknown phone vendor {vendor!r}: use one of {', '.join(sorted(PLUGINS))}"
        ) from None


def detect(path: str, user_agent: str) -> Detection | None:
    """The phone behind a request for ``path`` with ``user_agent``, or ``None``."""
    for candidate in PLUGINS.values():
        found = candidate.detect(path, user_agent)
        if found is not None:
            return found
    return None


__all__ = [
    "DEFAULT_NOTIFY_EVENT",
    "PLUGINS",
    "Detection",
    "FileRole",
    "Key",
    "RenderContext",
    "SipServer",
    "UnknownVendorError",
    "VendorPlugin",
    "detect",
    "plugin",
]
