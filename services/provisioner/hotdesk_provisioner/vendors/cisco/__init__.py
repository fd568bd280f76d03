"""Cisco MPP (78xx/88xx/68xx multiplatform firmware): ``<MAC>.xml`` (uppercase),
``<flat-profile>``."""

from __future__ import annotations

import re
from pathlib import Path

from ..base import FileRole, VendorPlugin


def file_names(mac: str, model: str) -> dict[str, str]:
    """``<MAC>.xml`` with the MAC uppercase."""
    return {f"{mac.upper()}.xml": "mac"}


PLUGIN = VendorPlugin(
    name="cisco",
    notify_event="resync",
    # "Cisco-CP-7832-3PCC/11.0.1 (00562b043615)"
    user_agent=re.compile(
        r"Cisco-CP-(?P<model>[A-Za-z0-9]+)-3PCC/(?P<firmware>\S+)"
        r"(?:\s+\((?P<mac>[0-9A-Fa-f]{12})\))?"
    ),
    paths=((re.compile(r"(?P<mac>[0-9A-F]{12})\.xml"), FileRole.DESK),),
    file_names=file_names,
    template_dir=Path(__file__).parent / "templates",
    autoescape=True,
)
