"""Run every benchmark (or the ones named): ``python -m bench [ledger register ...]``."""

from __future__ import annotations

import importlib
import sys
import time

ALL = ["ledger", "register", "logins", "provision", "presence", "scale"]


def main(argv: list[str]) -> int:
    names = argv or ALL
    failed = []
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}.__main__")
        except ModuleNotFoundError as exc:
            print(f"== {name}: not available ({exc.name})", flush=True)
            failed.append(name)
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        rc = module.main([])
        print(f"== {name}: exit {rc} after {time.monotonic() - started:.0f}s", flush=True)
        if rc:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
