"""Child processes that do not outlive their parent.

The embedded nats-server and the supervised services run in sessions of their own (so
a Ctrl-C reaches only the supervisor, which stops them in order). If the supervisor is
killed outright, nothing would stop them: on Linux, ``PR_SET_PDEATHSIG`` (prctl(2))
has the kernel send them SIGTERM when their parent dies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child get SIGTERM when its parent dies (Linux only)."""
    return _set_parent_death_signal if sys.platform.startswith("linux") else None
