"""Regenerate the golden rendered files: ``python -m tests.provisioner.update_golden``.

Review the diff before committing: the golden files are what phones receive.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hotdesk_provisioner.render import render
from tests.provisioner.samples import CASES, DIRECTORY, SIP, VENDOR_DESKS

GOLDEN = Path(__file__).parent / "golden"


def main() -> None:
    shutil.rmtree(GOLDEN, ignore_errors=True)
    for vendor, desk in VENDOR_DESKS.items():
        for case, seated in CASES.items():
            folder = GOLDEN / vendor / case
            folder.mkdir(parents=True)
            user = DIRECTORY.extension(seated) if seated else None
            for name, data in render(desk, DIRECTORY, user, SIP).items():
                (folder / name).write_bytes(data)


if __name__ == "__main__":
    main()
