"""A lean reader for JetStream pull batches: its own plain NATS connection that only
subscribes to one inbox and parses deliveries in bulk.

Projection replay is bound by per-message client overhead: nats-py builds a ``Msg``,
queues it and runs a callback for every delivery (tens of microseconds each). Here a
read fills a buffer and one loop cuts ``MSG``/``HMSG`` frames out of it (NATS client
protocol, https://docs.nats.io/reference/reference-protocols/nats-protocol), which
keeps replay several times faster. It speaks only what a pull needs: ``CONNECT``,
``SUB``, ``PUB`` of the pull request, ``PING``/``PONG``. Acks go through the caller's
nats-py connection.

It is used only for plain connections with user/password or token auth; with TLS or
credentials files the runner keeps to nats-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from urllib.parse import urlparse

Delivery = tuple[str, str, bytes]
"""``(subject, ack subject, payload)`` of one JetStream delivery."""


class PullConnectionError(Exception):
    """The pull connection could not be set up or was lost."""


class RawPull:
    """One pull inbox on a dedicated connection; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        parsed = urlparse(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 4222
        self.user = user or parsed.username
        self.password = password or parsed.password
        self.token = token
        self.inbox = "_INBOX.hotdesk-pull." + secrets.token_hex(12)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._buf = bytearray()
        self._batch: list[Delivery] = []
        self._wanted = 0
        self._done = asyncio.Event()
        self._error: BaseException | None = None

    async def connect(self, timeout: float = 5.0) -> None:
        """Open the connection, authenticate and subscribe to the inbox."""
        try:
            async with asyncio.timeout(timeout):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                info = await self._reader.readline()
                if not info.startswith(b"INFO "):
                    raise PullConnectionError(f"unexpected greeting {info[:40]!r}")
                options: dict[str, object] = {
                    "verbose": False,
                    "pedantic": False,
                    "headers": True,
                    "no_responders": True,
                    "protocol": 1,
                    "lang": "python-hotdesk-pull",
                    "version": "1",
                }
                if self.user:
                    options["user"] = self.user
                    options["pass"] = self.password or ""
                if self.token:
                    options["auth_token"] = self.token
                self._writer.write(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
                await self._writer.drain()
                while True:
                    line = await self._reader.readline()
                    if line.startswith(b"PONG"):
                        break
                    if line.startswith(b"-ERR") or not line:
                        raise PullConnectionError(f"server refused: {line.strip()!r}")
                self._writer.write(f"SUB {self.inbox} 1\r\n".encode())
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            await self.close()
            raise PullConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._task = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        """Close the connection and stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None

    async def pull(self, api_subject: str, batch: int, wait: float) -> list[Delivery]:
        """Ask for up to ``batch`` messages on ``api_subject`` (the consumer's
        ``MSG.NEXT``) and return what arrives before the batch is full or the
        request expires after ``wait`` seconds."""
        if self._writer is None or self._error is not None:
            raise PullConnectionError(f"pull connection lost: {self._error!r}")
        wanted = batch - len(self._batch)
        if wanted > 0:
            self._wanted = batch
            self._done.clear()
            body = json.dumps({"batch": wanted, "expires": int(wait * 1e9)}).encode()
            self._writer.write(
                f"PUB {api_subject} {self.inbox} {len(body)}\r\n".encode() + body + b"\r\n"
            )
            await self._writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait + 2.0):
                    await self._done.wait()
        if self._error is not None:
            raise PullConnectionError(f"pull connection lost: {self._error!r}")
        out, self._batch = self._batch, []
        return out

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                chunk = await self._reader.read(1 << 20)
                if not chunk:
                    raise PullConnectionError("server closed the connection")
                self._buf += chunk
                self._parse()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._error = exc
            self._done.set()

    def _parse(self) -> None:
        buf = self._buf
        size = len(buf)
        pos = 0
        batch = self._batch
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            if buf.startswith(b"MSG ", pos):
                parts = buf[pos:eol].split(b" ")
                end = eol + 2 + int(parts[-1])
                if end + 2 > size:
                    break
                batch.append(
                    (
                        parts[1].decode(),
                        parts[3].decode() if len(parts) == 5 else "",
                        bytes(buf[eol + 2 : end]),
                    )
                )
            elif buf.startswith(b"HMSG", pos):
                parts = buf[pos:eol].split(b" ")
                header_len, total = int(parts[-2]), int(parts[-1])
                end = eol + 2 + total
                if end + 2 > size:
                    break
                start = eol + 2
                if total == header_len and buf[start : start + 9] == b"NATS/1.0 ":
                    # A status with no payload (RFC-less NATS convention): 408 request
                    # expired, 404 no messages, 409 consumer changed; 100 is a heartbeat.
                    if buf[start + 9 : start + 12] != b"100":
                        self._done.set()
                else:
                    reply = parts[3].decode() if len(parts) == 6 else ""
                    batch.append((parts[1].decode(), reply, bytes(buf[start + header_len : end])))
            elif buf.startswith(b"PING", pos):
                assert self._writer is not None
                self._writer.write(b"PONG\r\n")
                end = eol
            elif buf.startswith(b"-ERR", pos):
                raise PullConnectionError(bytes(buf[pos:eol]).decode(errors="replace"))
            else:  # +OK, PONG, INFO
                end = eol
            pos = end + 2  # past the frame's closing CRLF
        del buf[:pos]
        if len(batch) >= self._wanted > 0:
            self._done.set()
