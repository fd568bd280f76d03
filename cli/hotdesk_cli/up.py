"""``hotdesk up``: everything on one machine under one supervisor.

Loads the config (the demo directory without one), starts the embedded nats-server
unless ``nats.url`` is set, creates the streams and buckets, publishes the directory,
answers reloads (SIGHUP, ``hotdesk reload``), starts every service as a
``hotdesk run <service>`` child and prints what to point a phone at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
from rich.console import Console
from rich.markup import escape

from hotdesk_contracts.directory import Config
from hotdesk_runtime.config import LoadedConfig, load_config
from hotdesk_runtime.demo import (
    DEMO_ADMIN,
    DEMO_USERS,
    SIP_PASSWORDS_FILE,
    demo_config,
    ensure_admin_password,
    ensure_sip_passwords,
)
from hotdesk_runtime.directory import DirectoryOwner
from hotdesk_runtime.nats import EmbeddedNats, connect, ensure_jetstream, nats_url

from .desk_removal import logout_removed_desk
from .runner import SERVICES
from .supervisor import ChildSpec, Supervisor

log = logging.getLogger("hotdesk.up")

RESOLVED_CONFIG_FILE = "resolved-config-{service}.json"
READY_LINE = "hotdesk is up"
"""Printed last, once everything is started (scripts wait for it)."""


@dataclass
class UpPlan:
    """What ``hotdesk up`` runs: the config and, on first demo start, the admin password."""

    loaded: LoadedConfig
    data_dir: Path
    demo: bool
    new_admin_password: str | None
    new_sip_passwords: bool = False


def plan(config_file: str | None, data_dir: Path, data_dir_given: bool) -> UpPlan:
    """Load the config (or build the demo one); raises ``ConfigError``."""
    path = config_file or os.environ.get("HOTDESK_CONFIG") or None
    new_password: str | None = None
    new_sip_passwords = False
    if path is None:
        admin = ensure_admin_password(data_dir)
        new_password = admin.new_password
        sip = ensure_sip_passwords(data_dir)
        new_sip_passwords = sip.new
        default = demo_config(
            admin.password_hash,
            nats_data_dir=str(data_dir / "nats"),
            sip_passwords=sip.passwords,
        )
        loaded = load_config(None, default=default)
    else:
        loaded = load_config(path)
        if data_dir_given:
            nats = msgspec.structs.replace(loaded.config.nats, data_dir=str(data_dir / "nats"))
            loaded.config = msgspec.structs.replace(loaded.config, nats=nats)
    return UpPlan(loaded, data_dir, path is None, new_password, new_sip_passwords)


def service_config(config: Config, index: int) -> Config:
    """The config of the ``index``-th child: per-process ports shifted by ``index``.

    ``telemetry.health_port`` and ``telemetry.prometheus_port`` belong to one process;
    on one machine the services take consecutive ports from the configured one (in the
    order of ``hotdesk_cli.runner.SERVICES``) instead of fighting over it.
    """
    telemetry = config.telemetry
    shifted = msgspec.structs.replace(
        telemetry,
        health_port=telemetry.health_port + index if telemetry.health_port else 0,
        prometheus_port=telemetry.prometheus_port + index if telemetry.prometheus_port else 0,
    )
    return msgspec.structs.replace(config, telemetry=shifted)


def write_resolved(config: Config, data_dir: Path, service: str) -> Path:
    """The checked config for one child (mode 0600: it holds SIP passwords)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / RESOLVED_CONFIG_FILE.format(service=service)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(msgspec.json.encode(config))
    return path


def child_specs(config: Config, data_dir: Path, config_path: Path | None) -> list[ChildSpec]:
    """One ``hotdesk run <service>`` child per service."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    specs = []
    for index, service in enumerate(SERVICES):
        resolved = write_resolved(service_config(config, index), data_dir, service)
        argv = [sys.executable, "-m", "hotdesk_cli", "run", service]
        argv += ["--resolved-config", str(resolved)]
        if config_path is not None:
            argv += ["--config", str(config_path)]
        specs.append(ChildSpec(service, argv, env))
    return specs


def print_banner(console: Console, up: UpPlan) -> None:
    """What to point a phone (and a browser) at."""
    config = up.loaded.config
    host = config.sip.advertised_host
    console.print(f"  SIP:           {host}:{config.sip.port} (UDP and TCP)", soft_wrap=True)
    console.print(f"  Provisioning:  http://{host}:{config.provisioning.port}/", soft_wrap=True)
    console.print(f"  Admin console: http://{host}:{config.admin.port}/", soft_wrap=True)
    if up.new_admin_password:
        console.print(
            f"  Admin login:   {DEMO_ADMIN} / [bold]{up.new_admin_password}[/] "
            "(shown once; only its hash is kept)",
            soft_wrap=True,
        )
    console.print(f"  NATS:          {nats_url(config)}", soft_wrap=True)
    if config.desks:
        console.print("  Desks (SIP user = desk name, registrar above):", soft_wrap=True)
        # SIP passwords go to the terminal once, when the demo makes them; never to a log.
        show = up.demo and up.new_sip_passwords
        for desk in config.desks:
            secret = f"  SIP password {desk.sip_password}" if show else ""
            console.print(
                f"    {desk.name}  {desk.vendor or 'any vendor':<10} MAC {desk.mac}{secret}",
                soft_wrap=True,
            )
    if up.demo:
        console.print(
            f"  SIP passwords: {up.data_dir / SIP_PASSWORDS_FILE} (readable by you only)",
            soft_wrap=True,
        )
        users = ", ".join(f"{n} {name} (PIN {pin})" for n, name, pin in DEMO_USERS)
        console.print(f"  Demo users:    {users}", soft_wrap=True)
    codes = config.dial_codes
    console.print(
        f"  Log in:        dial {codes.login}<ext>* from a desk; log out: {codes.logout}",
        soft_wrap=True,
    )
    console.print(f"[bold green]{READY_LINE}[/] (Ctrl-C stops everything)", soft_wrap=True)


async def _up(up: UpPlan, console: Console, embedded: EmbeddedNats | None) -> None:
    config = up.loaded.config
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    nc, js = await connect(config, name="hotdesk-supervisor")
    owner = DirectoryOwner(
        js,
        nc,
        config,
        up.loaded.path,
        on_desk_removed=logout_removed_desk(js),
    )

    async def reload_on_hup() -> None:
        reply = await owner.reload()
        if reply.ok:
            console.print(f"directory reloaded (revision {reply.revision})", soft_wrap=True)
        else:
            console.print(f"[red]reload refused[/] {escape(reply.error)}", soft_wrap=True)
            for problem in reply.problems:
                console.print(f"  {escape(str(problem.problem()))}", soft_wrap=True)

    reloads: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(reload_on_hup())
        reloads.add(task)  # keep a reference until it is done
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await ensure_jetstream(js, config.nats.replicas)
        await owner.publish()
        await owner.serve_reload_requests()
        supervisor = Supervisor(
            child_specs(config, up.data_dir, up.loaded.path),
            # The edge and the IVR let calls in progress end before they stop.
            stop_timeout=config.sip.drain_seconds + 10,
        )
        run = asyncio.create_task(supervisor.run(stopping))
        print_banner(console, up)
        await run
    finally:
        stopping.set()
        await owner.stop()
        with contextlib.suppress(Exception):
            await nc.drain()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def run_up(up: UpPlan, console: Console) -> int:
    """Run everything until SIGINT/SIGTERM; returns the exit code."""
    from .runner import run_loop

    config = up.loaded.config
    embedded: EmbeddedNats | None = None
    for warning in up.loaded.warnings:
        console.print(f"[yellow]{escape(str(warning))}[/]", soft_wrap=True)
    if not config.nats.url:
        embedded = EmbeddedNats.from_config(config)
        started = time.monotonic()
        embedded.start()
        log.info(
            "embedded nats-server ready",
            extra={"seconds": round(time.monotonic() - started, 2)},
        )
    try:
        run_loop(_up(up, console, embedded))
    finally:
        if embedded is not None:
            embedded.stop()
    console.print("hotdesk stopped", soft_wrap=True)
    return 0
