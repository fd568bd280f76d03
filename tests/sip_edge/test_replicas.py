"""Two edge replicas sharing one NATS: nonces and bindings of one work at the other."""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_sip_edge.sip.digest import DigestResponse, expected_response
from hotdesk_sip_edge.sip.headers import parse_auth
from tests.sip_edge.harness import (
    DESK_PASSWORD,
    EXT_PASSWORD,
    Phone,
    authorized_invite,
    directory,
    running_edge,
)


async def test_a_challenge_from_one_replica_is_answered_at_another(
    js: JetStreamContext, nc: Client
) -> None:
    dirs = directory()
    async with running_edge(js, nc, dirs) as first, running_edge(js, nc, dirs) as second:
        phone = Phone(first.port)
        try:
            challenge = await phone.request(phone.register_bytes("HD0001", call_id="rep"))
            assert challenge.status == 401
            _, params = parse_auth(challenge.headers.get("WWW-Authenticate") or "")
            uri = "sip:127.0.0.1"
            creds = DigestResponse(
                "HD0001",
                params["realm"],
                params["nonce"],
                uri,
                "",
                "MD5",
                "auth",
                "00000001",
                "x",
            )
            header = (
                f'Digest username="HD0001", realm="{creds.realm}", nonce="{creds.nonce}", '
                f'uri="{uri}", response="{expected_response(creds, "REGISTER", DESK_PASSWORD)}",'
                ' qop=auth, nc=00000001, cnonce="x"'
            )
            phone.edge = ("127.0.0.1", second.port)
            response = await phone.request(
                phone.register_bytes("HD0001", call_id="rep", authorization=header)
            )
            assert response.status == 200
            # The binding stored by the second replica routes calls at the first.
            bindings, _ = await first.locations.load("HD0001")
            assert len(bindings) == 1
        finally:
            phone.close()


async def test_a_binding_registered_at_one_replica_is_found_by_the_other(
    js: JetStreamContext, nc: Client
) -> None:
    dirs = directory()
    async with running_edge(js, nc, dirs) as first, running_edge(js, nc, dirs) as second:
        callee = Phone(first.port)
        caller = Phone(second.port)
        try:
            assert (await callee.register("101", EXT_PASSWORD)).status == 200
            # The INVITE reaches the callee's contact through the other replica.
            call = authorized_invite(caller, "100", "ext-secret-100", "101")
            task = asyncio.create_task(call)
            for _ in range(100):
                try:
                    data = await callee.recv(0.1)
                except TimeoutError:
                    continue
                if data.startswith(b"INVITE sip:101@127.0.0.1:"):
                    break
            else:
                raise AssertionError("the INVITE never reached the callee")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            callee.close()
            caller.close()
