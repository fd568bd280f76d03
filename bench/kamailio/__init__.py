"""Kamailio (Debian's ``kamailio`` package) as the peer registrar the benchmarks compare
against: a generated config in a temp dir, started in the foreground, stopped at the end.

:func:`render_config` fills ``registrar.cfg``; :func:`password_lines` writes the
htable entries it includes; :class:`Kamailio` runs one instance.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hotdesk_runtime.process import die_with_parent

TEMPLATE = Path(__file__).with_name("registrar.cfg")
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")


class KamailioError(RuntimeError):
    """Kamailio could not be started, or rejected its config."""


def binary() -> str:
    """The ``kamailio`` executable (``/usr/sbin`` is not always on ``PATH``)."""
    found = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/usr/bin")
    if not found:
        raise KamailioError("kamailio not found: install the Debian package kamailio")
    return found


def _quoted(value: str) -> str:
    if '"' in value or "\\" in value or "\n" in value:
        raise ValueError(f"cannot put {value!r} in a Kamailio string")
    return value


def password_lines(users: Iterable[tuple[str, str]]) -> str:
    """``$sht(auth=>USER) = "PASSWORD";`` for each user, run once at start."""
    return "".join(
        f'    $sht(auth=>{_quoted(name)}) = "{_quoted(password)}";\n' for name, password in users
    )


def render_config(
    host: str,
    port: int,
    passwords: Path,
    *,
    children: int | None,
    secret: str,
    modules: Path = MODULES,
) -> str:
    """The registrar config: UDP on ``host:port``; ``children=None`` keeps Kamailio's
    default number of worker processes per socket."""
    return TEMPLATE.read_text().format(
        host=host,
        port=port,
        passwords=_quoted(str(passwords)),
        children="" if children is None else f"children={children}",
        secret=_quoted(secret),
        modules=_quoted(str(modules)),
    )


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (after the parenthesised name, which may hold spaces) is the ppid.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@dataclass
class Kamailio:
    """One Kamailio registrar on ``host:port`` (UDP), its files under ``workdir``."""

    workdir: Path
    host: str
    port: int
    users: list[tuple[str, str]]
    children: int | None = 1
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def write_config(self) -> Path:
        """Write the password include and the config; check it with ``kamailio -c``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        passwords = self.workdir / "passwords.cfg"
        passwords.write_text(password_lines(self.users))
        config = self.workdir / "kamailio.cfg"
        config.write_text(
            render_config(
                self.host,
                self.port,
                passwords,
                children=self.children,
                secret=secrets.token_hex(16),
            )
        )
        check = subprocess.run(
            [binary(), "-c", "-f", str(config)], capture_output=True, timeout=30, check=False
        )
        if check.returncode != 0:
            raise KamailioError(f"kamailio rejected its config: {check.stderr.decode()[-2000:]}")
        return config

    def start(self) -> Kamailio:
        config = self.write_config()
        log = self.log_path.open("wb")
        # -DD: stay in the foreground (children are still forked); -E: log to stderr.
        self.proc = subprocess.Popen(
            [binary(), "-DD", "-E", "-f", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            preexec_fn=die_with_parent(),
        )
        log.close()
        deadline = time.monotonic() + 10
        # Ready once the workers are forked: main + udp workers + timers and the like.
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KamailioError(
                    f"kamailio exited with {self.proc.returncode}: "
                    f"{self.log_path.read_text(errors='replace')[-2000:]}"
                )
            if len(_children_of(self.proc.pid)) >= 2:
                return self
            time.sleep(0.05)
        raise KamailioError("kamailio did not start its workers within 10 s")

    def pids(self) -> list[int]:
        """The main process and its children, whose CPU time counts as Kamailio's."""
        if self.proc is None:
            return []
        return [self.proc.pid, *_children_of(self.proc.pid)]

    def stop(self) -> None:
        if self.proc is None:
            return
        children = _children_of(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The main process ends its workers itself; any left over were started by us too.
        for pid in children:
            with contextlib.suppress(OSError):
                if str(self.workdir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        self.proc = None
