"""Poly VVX: a master ``<mac>.cfg`` listing the other files in ``CONFIG_FILES``."""

from __future__ import annotations

import re
from pathlib import Path

from ..base import FileRole, VendorPlugin

COMMON_FILE = "hotdesk-common.cfg"
FALLBACK_MASTER = "000000000000.cfg"
"""What a VVX asks for when its own master file is missing."""


def file_names(mac: str, model: str) -> dict[str, str]:
    """Master, per-phone and common files (MAC lowercase, as the VVX requests it)."""
    mac = mac.lower()
    return {
        f"{mac}.cfg": "master",
        f"{mac}-hotdesk.cfg": "phone",
        COMMON_FILE: "common",
        FALLBACK_MASTER: "fallback",
    }


PLUGIN = VendorPlugin(
    name="poly",
    notify_event="check-sync",
    # "FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430 Type/Application": no MAC, it
    # comes from the requested file name.
    user_agent=re.compile(
        r"Polycom[A-Za-z]*-(?P<model>[A-Za-z0-9_]+)-UA/(?P<firmware>[0-9][0-9.]*)"
    ),
    paths=(
        (re.compile(re.escape(FALLBACK_MASTER)), FileRole.COMMON),
        (re.compile(re.escape(COMMON_FILE)), FileRole.COMMON),
        (re.compile(r"(?P<mac>[0-9a-f]{12})(?:-hotdesk)?\.cfg"), FileRole.DESK),
    ),
    file_names=file_names,
    template_dir=Path(__file__).parent / "templates",
    autoescape=True,
)
