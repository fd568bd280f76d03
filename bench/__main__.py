"""Run every benchmark (or the ones named): ``python -m bench [ledger register ...]``.

Options after one name go to that benchmark (``python -m bench register --rates 500
1000``); options with several names, or none, are refused rather than ignored.
"""

from __future__ import annotations

import importlib
import sys
import time

ALL = ["ledger", "register", "logins", "provision", "presence", "scale", "tracing"]


def main(argv: list[str]) -> int:
    first_option = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    names, options = argv[:first_option] or ALL, argv[first_option:]
    if options and len(names) != 1:
        print("options go to one benchmark: python -m bench NAME [options]", file=sys.stderr)
        return 2
    unknown = [name for name in names if name not in ALL]
    if unknown:
        print(f"no such benchmark: {', '.join(unknown)} (known: {' '.join(ALL)})", file=sys.stderr)
        return 2
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
        rc = module.main(options)
        print(f"== {name}: exit {rc} after {time.monotonic() - started:.0f}s", flush=True)
        if rc:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
