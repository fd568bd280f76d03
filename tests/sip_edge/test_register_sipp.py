"""REGISTER against the running edge with real SIPp: digest auth, refusals that do not
reveal which users exist, un-register, expiry, NAT and Path."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from hotdesk_contracts.messages import RegistrationChanged
from hotdesk_sip_edge.location import live
from tests.sip_edge.harness import (
    DESK_PASSWORD,
    Phone,
    directory,
    free_udp_port,
    run_sipp,
    running_edge,
)


async def test_desk_registers_with_md5_digest_and_the_binding_is_shared(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        result = await run_sipp(
            "register.xml",
            running.port,
            tmp=tmp_path,
            user="HD0001",
            password=DESK_PASSWORD,
            service="HD0001",
            keys={"expires": "300"},
        )
        assert result.returncode == 0, result.stderr + result.messages
        # Any replica sees the binding: read it straight from the KV bucket.
        kv = await js.key_value("hotdesk_registrations")
        entry = await kv.get("HD0001")
        assert entry.value is not None
        assert b"sip:HD0001@127.0.0.1" in entry.value
        events = [
            msgspec.json.decode(data, type=RegistrationChanged)
            for subject, data in running.published
            if subject == "hotdesk.edge.registration.HD0001.registered"
        ]
        assert len(events) == 1
        assert events[0].origin == "edge-test"


async def test_extension_registers_over_tcp(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        result = await run_sipp(
            "register.xml",
            running.port,
            tmp=tmp_path,
            user="101",
            password="ext-secret-101",
            service="101",
            transport="t1",
            keys={"expires": "300"},
        )
        assert result.returncode == 0, result.stderr + result.messages


async def test_wrong_password_is_forbidden(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        result = await run_sipp(
            "register_refused.xml",
            running.port,
            tmp=tmp_path,
            user="HD0001",
            password="wrong",
            service="HD0001",
            keys={"expires": "300"},
        )
        assert result.returncode == 0, result.stderr + result.messages


def _received(messages: str) -> list[str]:
    """The messages SIPp logged as received, with per-call values masked."""
    blocks = re.split(r"-{20,}[^\n]*\n", messages)
    out = []
    for block in blocks:
        if "message received" not in block:
            continue
        text = block.split("\n", 2)[-1].strip()
        text = re.sub(r"tag=[^;>\r\n]+", "tag=*", text)
        text = re.sub(r"branch=[^;>\r\n]+", "branch=*", text)
        text = re.sub(r'nonce="[^"]+"', 'nonce="*"', text)
        text = re.sub(r"rport=\d+", "rport=*", text)
        text = re.sub(r"Call-ID: .*", "Call-ID: *", text)
        out.append(text)
    return out


async def test_unknown_user_is_indistinguishable_from_a_wrong_password(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        port = free_udp_port()
        known = await run_sipp(
            "register_refused.xml",
            running.port,
            tmp=tmp_path,
            port=port,
            user="HD0001",
            password="wrong",
            service="HD0001",
            keys={"expires": "300"},
        )
        nobody = await run_sipp(
            "register_refused.xml",
            running.port,
            tmp=tmp_path,
            port=port,
            user="HD9999",  # no such desk; the AOR in To/From stays the same
            password="wrong",
            service="HD0001",
            keys={"expires": "300"},
        )
        for result in (known, nobody):
            assert result.returncode == 0, result.stderr + result.messages
        assert _received(known.messages) == _received(nobody.messages)
        assert len(_received(nobody.messages)) == 2


async def test_unregister_with_star_removes_every_binding(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        result = await run_sipp(
            "register_unregister.xml",
            running.port,
            tmp=tmp_path,
            user="HD0002",
            password=DESK_PASSWORD,
            service="HD0002",
        )
        assert result.returncode == 0, result.stderr + result.messages
        kinds = [s for s, _ in running.published if ".registration.HD0002." in s]
        assert kinds == [
            "hotdesk.edge.registration.HD0002.registered",
            "hotdesk.edge.registration.HD0002.unregistered",
        ]


async def test_binding_expires_after_its_interval(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        result = await run_sipp(
            "register.xml",
            running.port,
            tmp=tmp_path,
            user="HD0001",
            password=DESK_PASSWORD,
            service="HD0001",
            keys={"expires": "1"},
        )
        assert result.returncode == 0, result.stderr + result.messages
        store = running.locations
        bindings, _ = await store.load("HD0001")
        assert len(bindings) == 1
        expires_at = bindings[0].expires_at
        assert live(bindings, expires_at - 0.1)
        assert not live(bindings, expires_at + 0.1)
        # The key carries a per-message TTL: the server removes it by itself.
        kv = await js.key_value("hotdesk_registrations")
        for _ in range(60):
            try:
                await kv.get("HD0001")
            except KeyNotFoundError:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the registration key outlived its TTL")
        # The edge that stored the binding announces the expiry once.
        for _ in range(60):
            if any(s.endswith(".HD0001.expired") for s, _ in running.published):
                break
            await asyncio.sleep(0.1)
        expired = [s for s, _ in running.published if s.endswith(".HD0001.expired")]
        assert expired == ["hotdesk.edge.registration.HD0001.expired"]


async def test_register_behind_nat_is_answered_to_the_real_source(
    js: JetStreamContext, nc: Client, tmp_path: Path
) -> None:
    async with running_edge(js, nc, directory()) as running:
        result = await run_sipp(
            "register_nat.xml",
            running.port,
            tmp=tmp_path,
            user="HD0001",
            password=DESK_PASSWORD,
            service="HD0001",
            keys={"nat_host": "127.0.0.2", "nat_port": "5999"},
        )
        assert result.returncode == 0, result.stderr + result.messages
        bindings, _ = await running.locations.load("HD0001")
        assert bindings[0].behind_nat
        assert bindings[0].source_host == "127.0.0.1"


async def test_sha256_digest_is_accepted(js: JetStreamContext, nc: Client) -> None:
    async with running_edge(js, nc, directory(), digest_algorithms=["SHA-256", "MD5"]) as running:
        phone = Phone(running.port)
        try:
            response = await phone.register("HD0001", DESK_PASSWORD, algorithm="SHA-256")
            assert response.status == 200
            wrong = await phone.register("HD0001", "nope", algorithm="SHA-256", call_id="reg-2")
            assert wrong.status == 403
        finally:
            phone.close()


async def test_repeated_failures_block_the_source(js: JetStreamContext, nc: Client) -> None:
    async with running_edge(js, nc, directory(), auth_fail_limit=3) as running:
        phone = Phone(running.port)
        try:
            for i in range(3):
                response = await phone.register("HD0001", "nope", call_id=f"bad-{i}")
                assert response.status == 403
            # Blocked now: even the right password is refused, with the same 403.
            response = await phone.register("HD0001", DESK_PASSWORD, call_id="good")
            assert response.status == 403
            assert running.edge.auth.stats["auth_blocks"] >= 1
        finally:
            phone.close()


async def test_concurrent_registers_for_one_aor_all_succeed(
    js: JetStreamContext, nc: Client
) -> None:
    async with running_edge(js, nc, directory()) as running:
        phones = [Phone(running.port) for _ in range(20)]
        try:
            responses = await asyncio.gather(
                *(
                    phone.register("HD0001", DESK_PASSWORD, call_id=f"many-{i}")
                    for i, phone in enumerate(phones)
                )
            )
            assert [r.status for r in responses] == [200] * 20
            bindings, _ = await running.locations.load("HD0001")
            assert len(bindings) == 20
        finally:
            for phone in phones:
                phone.close()
