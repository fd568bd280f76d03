"""Grandstream GRP/GXP: one ``cfg<mac>.xml`` (lowercase) in the ``gs_provision`` format."""

from __future__ import annotations

import re
from pathlib import Path

from ..base import FileRole, VendorPlugin


def file_names(mac: str, model: str) -> dict[str, str]:
    """``cfg<mac>.xml`` with the MAC lowercase."""
    return {f"cfg{mac.lower()}.xml": "mac"}


PLUGIN = VendorPlugin(
    name="grandstream",
    notify_event="check-sync",
    # "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId c074ad2bd859"
    user_agent=re.compile(
        r"Grandstream Model HW (?P<model>[A-Za-z0-9]+)(?:\s+V[0-9.]+[A-Za-z]*)?"
        r"\s+SW (?P<firmware>\S+)(?:\s+DevId (?P<mac>[0-9A-Fa-f]{12}))?"
    ),
    paths=((re.compile(r"cfg(?P<mac>[0-9a-f]{12})\.xml"), FileRole.DESK),),
    file_names=file_names,
    template_dir=Path(__file__).parent / "templates",
    autoescape=True,
)
