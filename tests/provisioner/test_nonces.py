"""Digest nonces across replicas: one key shared through KV, so a nonce issued by one
replica is good on another; a replayed nonce count is refused on any replica."""

from __future__ import annotations

import re

import httpx
from hypothesis import given
from hypothesis import strategies as st
from nats.js import JetStreamContext

from hotdesk_contracts import streams
from hotdesk_contracts.directory import ProvisioningSettings
from hotdesk_provisioner.httpauth import REALM, digest_response, make_nonce, nonce_age
from hotdesk_provisioner.nonces import LocalNonceCounts, parse_nc
from hotdesk_provisioner.seats import DeskSeats
from hotdesk_provisioner.server import ProvisioningServer
from hotdesk_provisioner.state import (
    REPROVISION_PREFIX,
    SharedNonceCounts,
    desk_key,
    desk_of_key,
    open_bucket,
    shared_nonce_key,
)
from tests.provisioner.samples import DIRECTORY, SIP

YEALINK_UA = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56"
PATH = "/805ec0123456.cfg"


async def replica_server(js: JetStreamContext, name: str) -> ProvisioningServer:
    """A provisioning server set up as the service sets up each replica."""
    state = await open_bucket(js, streams.PROVISIONER)
    return ProvisioningServer(
        directory=lambda: DIRECTORY,
        settings=ProvisioningSettings(),
        sip=SIP,
        seats=DeskSeats(),
        nonce_key=await shared_nonce_key(state),
        origin=name,
        nonce_counts=SharedNonceCounts(await open_bucket(js, streams.NONCE_COUNTS)),
    )


def client(server: ProvisioningServer) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=server.app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8081")


def nonce_of(response: httpx.Response) -> str:
    found = re.search(r'nonce="([^"]+)"', response.headers["WWW-Authenticate"])
    assert found is not None
    return found.group(1)


def authorization(nonce: str, nc: str, cnonce: str = "0a4f113b") -> str:
    response = digest_response("HD0001", "desk-pw-1", "GET", PATH, nonce, nc, cnonce)
    return (
        f'Digest username="HD0001", realm="{REALM}", nonce="{nonce}", uri="{PATH}", '
        f'algorithm=MD5, response="{response}", qop=auth, nc={nc}, cnonce="{cnonce}", '
        f'opaque="{REALM}"'
    )


async def fetch(server: ProvisioningServer, header: str | None = None) -> httpx.Response:
    headers = {"User-Agent": YEALINK_UA}
    if header is not None:
        headers["Authorization"] = header
    async with client(server) as http:
        return await http.get(PATH, headers=headers)


async def test_replicas_share_one_nonce_key_created_once(js: JetStreamContext) -> None:
    state = await open_bucket(js, streams.PROVISIONER)
    first, second = await shared_nonce_key(state), await shared_nonce_key(state)
    assert first == second
    assert len(first) == 32


async def test_a_nonce_issued_by_one_replica_is_accepted_by_another(
    js: JetStreamContext,
) -> None:
    a = await replica_server(js, "provisioner-a")
    b = await replica_server(js, "provisioner-b")
    challenge = await fetch(a)
    assert challenge.status_code == 401
    answered = await fetch(b, authorization(nonce_of(challenge), "00000001"))
    assert answered.status_code == 200
    assert b"account.1.label = HD0001" in answered.content


async def test_a_replayed_nonce_count_is_refused_on_any_replica(js: JetStreamContext) -> None:
    a = await replica_server(js, "provisioner-a")
    b = await replica_server(js, "provisioner-b")
    nonce = nonce_of(await fetch(a))
    first = authorization(nonce, "00000001")
    assert (await fetch(a, first)).status_code == 200

    replayed_elsewhere = await fetch(b, first)
    replayed_here = await fetch(a, first)
    assert replayed_elsewhere.status_code == replayed_here.status_code == 401
    # A fresh challenge, with a nonce other than the replayed one.
    assert nonce_of(replayed_elsewhere) != nonce
    assert "stale" not in replayed_elsewhere.headers["WWW-Authenticate"]

    # The phone that owns the nonce counts on and is served, on either replica.
    assert (await fetch(b, authorization(nonce, "00000002"))).status_code == 200
    assert (await fetch(a, authorization(nonce, "00000003"))).status_code == 200
    assert (await fetch(b, authorization(nonce, "00000002", "other"))).status_code == 401


async def test_one_process_refuses_a_replayed_nonce_count_without_a_bucket() -> None:
    server = ProvisioningServer(
        directory=lambda: DIRECTORY,
        settings=ProvisioningSettings(),
        sip=SIP,
        seats=DeskSeats(),
        nonce_key=b"test-key",
        origin="provisioner-test",
    )
    nonce = nonce_of(await fetch(server))
    header = authorization(nonce, "00000001")
    assert (await fetch(server, header)).status_code == 200
    assert (await fetch(server, header)).status_code == 401


async def test_httpx_digest_client_fetches_repeatedly_from_two_replicas(
    js: JetStreamContext,
) -> None:
    # A client reusing its nonce with a rising nc, alternating between replicas
    # behind a balancer, is never refused.
    a = await replica_server(js, "provisioner-a")
    b = await replica_server(js, "provisioner-b")
    auth = httpx.DigestAuth("HD0001", "desk-pw-1")
    statuses = []
    for server in (a, b, a, b):
        async with client(server) as http:
            response = await http.get(PATH, headers={"User-Agent": YEALINK_UA}, auth=auth)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200]


async def test_nonce_counts_must_rise_per_nonce() -> None:
    counts = LocalNonceCounts()
    assert await counts.admit("n1", 1, 0.0)
    assert await counts.admit("n1", 3, 1.0)
    assert not await counts.admit("n1", 3, 2.0)
    assert not await counts.admit("n1", 2, 2.0)
    assert await counts.admit("n2", 1, 2.0)


async def test_old_nonce_counts_are_forgotten_when_the_table_is_full() -> None:
    counts = LocalNonceCounts(horizon=10.0, max_entries=2)
    assert await counts.admit("old", 1, 0.0)
    assert await counts.admit("recent", 1, 95.0)
    assert await counts.admit("new", 1, 100.0)
    assert not await counts.admit("recent", 1, 100.0)


def test_nonce_count_is_eight_hex_digits_at_most() -> None:
    assert parse_nc("0000000a") == 10
    assert parse_nc("") is None
    assert parse_nc("000000001") is None
    assert parse_nc("zz") is None


@given(st.text(min_size=1, max_size=40))
def test_any_desk_name_round_trips_through_a_kv_key(desk: str) -> None:
    key = desk_key(REPROVISION_PREFIX, desk)
    assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", key)
    assert desk_of_key(REPROVISION_PREFIX, key) == desk


def test_two_challenges_in_the_same_second_carry_different_nonces() -> None:
    first, second = make_nonce(b"key", 1000.0), make_nonce(b"key", 1000.0)
    assert first != second
    assert nonce_age(b"key", first, 1003.0) == nonce_age(b"key", second, 1003.0) == 3.0
