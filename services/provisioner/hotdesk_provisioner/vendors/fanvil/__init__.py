"""Fanvil X-series: a per-model common file, then ``<mac>.cfg`` (lowercase), XML
``<sysConf>``."""

from __future__ import annotations

import re
from pathlib import Path

from ..base import FileRole, VendorPlugin

# Common file names differ per model family (as in the Wazo Fanvil plugin); models not
# listed use the f0<model>hw1.100.cfg pattern of the X-series [verify per model].
COMMON_FILES: dict[str, str] = {
    "X3S": "f0X3shw1.100.cfg",
    "X4": "f0X4hw1.100.cfg",
    "X5": "f0X5hw1.100.cfg",
    "X5S": "F0V00X5S0000.cfg",
    "X6": "F0V00X600000.cfg",
    "X210": "F0V00X200000.cfg",
}


def common_file(model: str) -> str:
    """The model-common file name a Fanvil of ``model`` requests."""
    return COMMON_FILES.get(model, f"f0{model}hw1.100.cfg")


def file_names(mac: str, model: str) -> dict[str, str]:
    """``<mac>.cfg`` (lowercase) plus the model-common file when the model is known."""
    names = {f"{mac.lower()}.cfg": "mac"}
    if model:
        names[common_file(model)] = "common"
    return names


PLUGIN = VendorPlugin(
    name="fanvil",
    notify_event="check-sync",
    # "Fanvil X4U 2.10.2.6887 0c383e07e16c": MAC last.
    user_agent=re.compile(
        r"^Fanvil\s+(?P<model>[A-Za-z0-9\-]+)\s+(?P<firmware>[0-9][0-9.]*)"
        r"(?:\s+(?P<mac>[0-9A-Fa-f]{12}))?"
    ),
    paths=(
        (re.compile(r"(?P<mac>[0-9a-f]{12})\.cfg"), FileRole.DESK),
        (re.compile(r"(?:f0[A-Za-z0-9\-]+hw1\.100|F0[0-9A-Z]{9})\.cfg"), FileRole.COMMON),
    ),
    file_names=file_names,
    template_dir=Path(__file__).parent / "templates",
    autoescape=True,
)
