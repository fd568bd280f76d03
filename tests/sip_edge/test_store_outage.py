"""The edge when NATS is gone under a request: the phone is told, not left hanging."""

from __future__ import annotations

import nats

from hotdesk_sip_edge.sip.digest import DigestResponse, expected_response
from hotdesk_sip_edge.sip.headers import parse_auth
from hotdesk_sip_edge.sip.message import SipResponse
from tests.sip_edge.harness import DESK_PASSWORD, Phone, directory, running_edge
from tests.support.natsserver import NatsServer


async def _register(phone: Phone, user: str, password: str, timeout: float) -> SipResponse:
    """REGISTER with digest, waiting up to ``timeout`` for each final response."""
    first = await phone.request(phone.register_bytes(user), timeout=timeout)
    if first.status != 401:
        return first
    _, params = parse_auth(first.headers.get("WWW-Authenticate") or "")
    uri = f"sip:127.0.0.1:{phone.edge[1]}"
    creds = DigestResponse(
        username=user,
        realm=params["realm"],
        nonce=params["nonce"],
        uri=uri,
        response="",
        algorithm="MD5",
        qop="auth",
        nc="00000001",
        cnonce="c0ffee",
    )
    digest = expected_response(creds, "REGISTER", password)
    header = (
        f'Digest username="{user}", realm="{creds.realm}", nonce="{creds.nonce}", '
        f'uri="{uri}", response="{digest}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"'
    )
    return await phone.request(phone.register_bytes(user, authorization=header), timeout=timeout)


async def test_a_register_the_location_store_cannot_take_is_answered_503_with_retry_after(
    own_nats_server: NatsServer,
) -> None:
    nc = await nats.connect(own_nats_server.url, reconnect_time_wait=0.2)
    js = nc.jetstream()
    try:
        async with running_edge(js, nc, directory()) as running:
            phone = Phone(running.port)
            try:
                own_nats_server.stop()
                # The store's read times out (nats-py's 5 s): well inside the phone's
                # 32 s of retransmissions, which would otherwise all go unanswered.
                refused = await _register(phone, "HD0001", DESK_PASSWORD, timeout=20)
                assert refused.status == 503
                assert refused.headers.get("Retry-After") == "5"
                own_nats_server.start()
                # Back with the server: the phone's retry registers.
                for _ in range(50):
                    again = await _register(phone, "HD0001", DESK_PASSWORD, timeout=20)
                    if again.status == 200:
                        break
                assert again.status == 200
            finally:
                phone.close()
    finally:
        await nc.close()
