"""Snom D7xx: ``snom<model>.htm``, then ``snom<model>-<MAC>.htm`` pointing to the XML
settings file (MAC uppercase)."""

from __future__ import annotations

import re
from pathlib import Path

from ..base import FileRole, VendorPlugin


def file_names(mac: str, model: str) -> dict[str, str]:
    """The model file, the per-phone pointer and the settings file (MAC uppercase)."""
    upper = mac.upper()
    names = {f"snom-{upper}.xml": "settings"}
    if model:
        names[f"snom{model}.htm"] = "common"
        names[f"snom{model}-{upper}.htm"] = "pointer"
    return names


PLUGIN = VendorPlugin(
    name="snom",
    notify_event="check-sync;reboot=false",
    # "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 000413A1B2C3)": recent firmware
    # adds the MAC.
    user_agent=re.compile(
        r"snom(?P<model>[A-Za-z0-9]+)-SIP\s+(?P<firmware>[0-9][0-9.]*)"
        r"(?:\s+(?P<mac>[0-9A-Fa-f]{12}))?"
    ),
    paths=(
        (re.compile(r"snom[A-Za-z0-9]+-(?P<mac>[0-9A-F]{12})\.htm"), FileRole.DESK),
        (re.compile(r"snom-(?P<mac>[0-9A-F]{12})\.xml"), FileRole.DESK),
        (re.compile(r"snom[A-Za-z0-9]+\.htm"), FileRole.COMMON),
    ),
    file_names=file_names,
    template_dir=Path(__file__).parent / "templates",
    autoescape=True,
)
