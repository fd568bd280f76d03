"""A TCP link between a service and the test's nats-server that the test can hold.

Everything a client sends passes through unchanged until :meth:`NatsLink.hold` names a
byte pattern (a subject, say): from the first occurrence of the pattern on, what that
connection sends waits in the link until :meth:`NatsLink.release`. The server's side
always passes. So a test can keep one step of a real service (a consumer being
created, a subscription, a pull) from reaching the real server, look at the service
meanwhile, and let it go on, without touching the service's code.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class _Connection:
    upstream: asyncio.StreamWriter
    holding: bool = False
    held: list[bytes] = field(default_factory=list)


def _partial_match(data: bytes, pattern: bytes) -> int:
    """How many bytes at the end of ``data`` begin ``pattern`` (kept back, so a pattern
    split across two reads is still found)."""
    for size in range(min(len(pattern) - 1, len(data)), 0, -1):
        if data.endswith(pattern[:size]):
            return size
    return 0


class NatsLink:
    """Listens on a free loopback port and relays every connection to ``upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.held = asyncio.Event()
        """Set once a connection sent the pattern and is being held."""
        self._pattern: bytes | None = None
        self._server: asyncio.Server | None = None
        self._connections: list[_Connection] = []
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> NatsLink:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def hold(self, pattern: bytes) -> None:
        """Hold what any connection sends from ``pattern`` on (until :meth:`release`)."""
        self._pattern = pattern
        self.held.clear()

    def release(self) -> None:
        """Send everything held, in order, and stop holding."""
        self._pattern = None
        for conn in self._connections:
            if conn.holding:
                conn.holding = False
                if conn.held and not conn.upstream.is_closing():
                    conn.upstream.write(b"".join(conn.held))
                conn.held.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self._connections:
            conn.upstream.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        conn = _Connection(up_writer)
        self._connections.append(conn)
        for pump in (self._to_server(reader, conn), self._to_client(up_reader, writer)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _to_server(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        kept = b""
        try:
            while data := await reader.read(65536):
                if conn.holding:
                    conn.held.append(data)
                    continue
                data, kept = kept + data, b""
                pattern = self._pattern
                if pattern is not None:
                    at = data.find(pattern)
                    if at >= 0:
                        conn.upstream.write(data[:at])
                        conn.holding = True
                        conn.held.append(data[at:])
                        self.held.set()
                        continue
                    size = _partial_match(data, pattern)
                    if size:
                        data, kept = data[:-size], data[-size:]
                conn.upstream.write(data)
                await conn.upstream.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            conn.upstream.close()
            if conn in self._connections:
                self._connections.remove(conn)

    async def _to_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
