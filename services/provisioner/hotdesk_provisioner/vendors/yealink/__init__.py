"""Yealink T4x/T5x/T3x: ``key = value`` files, a model-common file and ``<mac>.cfg``."""

from __future__ import annotations

import re
from pathlib import Path

from ..base import FileRole, VendorPlugin

# The common file is y0000000000XX.cfg where XX is the model's hardware id, which is
# also the first number of its firmware version (T46S firmware 66.x -> y000000000066.cfg).
MODEL_IDS: dict[str, int] = {
    "T41S": 68,
    "T42S": 67,
    "T46S": 66,
    "T48S": 65,
    "T53": 95,
    "T53W": 95,
    "T54W": 96,
    "T57W": 97,
    "T46U": 108,
    "T31P": 124,
}


def file_names(mac: str, model: str) -> dict[str, str]:
    """``<mac>.cfg`` (lowercase) plus the model-common file when the model is known."""
    names = {f"{mac.lower()}.cfg": "mac"}
    if model in MODEL_IDS:
        names[f"y{MODEL_IDS[model]:012d}.cfg"] = "common"
    return names


PLUGIN = VendorPlugin(
    name="yealink",
    notify_event="check-sync;reboot=false",
    # "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56"
    user_agent=re.compile(
        r"^Yealink\s+(?:SIP-)?(?P<model>[A-Za-z0-9]+)\s+(?P<firmware>[0-9][0-9.]*)"
        r"(?:\s+(?P<mac>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}))?"
    ),
    paths=(
        (re.compile(r"y\d{12}\.cfg"), FileRole.COMMON),
        (re.compile(r"(?P<mac>[0-9a-f]{12})\.cfg"), FileRole.DESK),
    ),
    file_names=file_names,
    template_dir=Path(__file__).parent / "templates",
    autoescape=False,
)
