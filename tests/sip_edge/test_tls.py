"""SIP over TLS on the TLS port when a certificate is configured (RFC 3261 §26.2)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.sip_edge.harness import directory, free_udp_port, running_edge


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_options_over_tls_is_answered_on_the_same_connection(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    cert, key = _certificate(tmp_path)
    tls_port = free_udp_port()
    async with running_edge(
        js, nc, directory(), tls_cert=str(cert), tls_key=str(key), tls_port=tls_port
    ) as running:
        assert running.edge.transport.tls_port == tls_port
        context = ssl.create_default_context(cafile=str(cert))
        reader, writer = await asyncio.open_connection("127.0.0.1", tls_port, ssl=context)
        try:
            local = writer.get_extra_info("sockname")[1]
            writer.write(
                (
                    f"OPTIONS sip:127.0.0.1:{tls_port};transport=tls SIP/2.0\r\n"
                    f"Via: SIP/2.0/TLS 127.0.0.1:{local};branch=z9hG4bKtls1\r\n"
                    "From: <sip:HD0001@127.0.0.1>;tag=t\r\nTo: <sip:127.0.0.1>\r\n"
                    "Call-ID: tls1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"SIP/2.0 200 OK")
            assert b"Call-ID: tls1" in head
        finally:
            writer.close()
