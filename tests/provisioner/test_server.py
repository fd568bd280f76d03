"""The provisioning HTTP server: authentication, no MAC enumeration, casing, rate
limit, reverse proxy, unknown devices, newest state."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import urllib.parse
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from nats.js import JetStreamContext

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.codec import encode_event
from hotdesk_contracts.directory import Directory, ProvisioningSettings
from hotdesk_contracts.events import Cause, LoggedIn, LoggedOut, LogoutReason, Roamed
from hotdesk_contracts.messages import UnknownDeviceSeen
from hotdesk_provisioner.bus import follow_desk_ledger, publish_unknown_device
from hotdesk_provisioner.httpauth import REALM
from hotdesk_provisioner.render import render
from hotdesk_provisioner.seats import DeskSeats
from hotdesk_provisioner.server import (
    UNKNOWN_DEVICE_FIELD_CHARS,
    UNKNOWN_DEVICE_REPORTS_PER_MINUTE,
    ProvisioningServer,
    ServedFile,
)
from hotdesk_runtime.nats import ensure_jetstream
from tests.provisioner.samples import DIRECTORY, SIP, VENDOR_DESKS

YEALINK_UA = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56"
CISCO_UA = "Cisco-CP-7832-3PCC/11.0.1 (00562b043615)"
YEALINK = VENDOR_DESKS["yealink"]
YEALINK_AUTH = httpx.DigestAuth("HD0001", "desk-pw-1")


def make_server(
    *,
    directory: Directory = DIRECTORY,
    seats: DeskSeats | None = None,
    **settings: object,
) -> tuple[ProvisioningServer, list[UnknownDeviceSeen], list[ServedFile]]:
    unknown: list[UnknownDeviceSeen] = []
    served: list[ServedFile] = []

    async def report(seen: UnknownDeviceSeen) -> None:
        unknown.append(seen)

    server = ProvisioningServer(
        directory=lambda: directory,
        settings=ProvisioningSettings(**settings),  # type: ignore[arg-type]
        sip=SIP,
        seats=seats or DeskSeats(),
        nonce_key=b"test-key",
        origin="provisioner-test",
        report_unknown=report,
        on_served=served.append,
    )
    return server, unknown, served


def client(server: ProvisioningServer, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=server.app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8081")


def login(desk: str, user: str, n: int = 1) -> LoggedIn:
    return LoggedIn(
        event_id=f"e{n}",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        cause=Cause(actor=f"user:{user}"),
        correlation_id=f"c{n}",
        desk=desk,
        user=user,
    )


async def test_a_request_without_credentials_is_challenged_with_digest_md5() -> None:
    server, _, _ = make_server()
    async with client(server) as http:
        response = await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Digest ")
    assert 'qop="auth"' in challenge
    assert "algorithm=MD5" in challenge


async def test_the_desk_fetches_its_file_with_its_credentials() -> None:
    server, _, served = make_server()
    async with client(server) as http:
        response = await http.get(
            "/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA}, auth=YEALINK_AUTH
        )
    assert response.status_code == 200
    expected = render(YEALINK, DIRECTORY, None, SIP, provisioning_url=server.provisioning_url)
    assert response.content == expected["805ec0123456.cfg"]
    assert [(s.desk, s.filename) for s in served] == [("HD0001", "805ec0123456.cfg")]


async def test_wrong_password_is_refused_with_a_new_challenge() -> None:
    server, _, served = make_server()
    async with client(server) as http:
        response = await http.get(
            "/805ec0123456.cfg",
            headers={"User-Agent": YEALINK_UA},
            auth=httpx.DigestAuth("HD0001", "wrong"),
        )
    assert response.status_code == 401
    assert served == []


async def test_unknown_mac_and_wrong_password_for_a_known_mac_look_the_same() -> None:
    server, _, _ = make_server()
    ua = {"User-Agent": YEALINK_UA}
    async with client(server) as http:
        known_wrong = await http.get("/805ec0123456.cfg", headers=ua, auth=("x", "y"))
        unknown_wrong = await http.get("/001565abcdef.cfg", headers=ua, auth=("x", "y"))
        digest_known_wrong = await http.get(
            "/805ec0123456.cfg", headers=ua, auth=httpx.DigestAuth("HD0001", "nope")
        )
        digest_unknown_wrong = await http.get(
            "/001565abcdef.cfg", headers=ua, auth=httpx.DigestAuth("HD0001", "nope")
        )
        # With valid credentials of some desk, every MAC but its own is simply not found.
        unknown_right = await http.get("/001565abcdef.cfg", headers=ua, auth=YEALINK_AUTH)
        other_desk_right = await http.get("/0c383e07e16c.cfg", headers=ua, auth=YEALINK_AUTH)
    for pair in [(known_wrong, unknown_wrong), (digest_known_wrong, digest_unknown_wrong)]:
        assert pair[0].status_code == pair[1].status_code == 401
        assert pair[0].content == pair[1].content
        assert sorted(pair[0].headers) == sorted(pair[1].headers)
    assert unknown_right.status_code == other_desk_right.status_code == 404
    assert unknown_right.content == other_desk_right.content


async def test_mac_casing_follows_each_vendor() -> None:
    server, _, _ = make_server()
    cisco_auth = httpx.DigestAuth("HD0006", "desk-pw-6")
    async with client(server) as http:
        yealink_upper = await http.get(
            "/805EC0123456.cfg", headers={"User-Agent": YEALINK_UA}, auth=YEALINK_AUTH
        )
        cisco_upper = await http.get(
            "/00562B043615.xml", headers={"User-Agent": CISCO_UA}, auth=cisco_auth
        )
        cisco_lower = await http.get(
            "/00562b043615.xml", headers={"User-Agent": CISCO_UA}, auth=cisco_auth
        )
    assert yealink_upper.status_code == 404
    assert cisco_upper.status_code == 200
    assert b"<User_ID_1_>HD0006</User_ID_1_>" in cisco_upper.content
    assert cisco_lower.status_code == 404


async def test_model_common_file_is_served_to_a_desk_of_that_vendor() -> None:
    server, _, served = make_server()
    async with client(server) as http:
        response = await http.get(
            "/y000000000066.cfg", headers={"User-Agent": YEALINK_UA}, auth=YEALINK_AUTH
        )
    assert response.status_code == 200
    assert b"sip.notify_reboot_enable = 0" in response.content
    assert served == []


async def test_snom_and_poly_follow_their_pointer_files() -> None:
    server, _, _ = make_server()
    snom_ua = {"User-Agent": "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 000413A1B2C3)"}
    poly_ua = {"User-Agent": "FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430 Type/Application"}
    async with client(server) as http:
        pointer = await http.get(
            "/snomD785-000413A1B2C3.htm",
            headers=snom_ua,
            auth=httpx.DigestAuth("HD0003", "desk-pw-3"),
        )
        settings = await http.get(
            "/snom-000413A1B2C3.xml", headers=snom_ua, auth=httpx.DigestAuth("HD0003", "desk-pw-3")
        )
        master = await http.get(
            "/0004f2a1b2c3.cfg", headers=poly_ua, auth=httpx.DigestAuth("HD0002", "desk-pw-2")
        )
        phone = await http.get(
            "/0004f2a1b2c3-hotdesk.cfg",
            headers=poly_ua,
            auth=httpx.DigestAuth("HD0002", "desk-pw-2"),
        )
    assert pointer.status_code == settings.status_code == master.status_code == 200
    assert b"http://192.0.2.10:8081/snom-000413A1B2C3.xml" in pointer.content
    assert b'<user_name idx="1" perm="R">HD0003</user_name>' in settings.content
    assert b'CONFIG_FILES="0004f2a1b2c3-hotdesk.cfg, hotdesk-common.cfg"' in master.content
    assert phone.status_code == 200


async def test_basic_auth_when_configured() -> None:
    server, _, _ = make_server(auth="basic")
    async with client(server) as http:
        challenge = await http.get("/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA})
        ok = await http.get(
            "/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA}, auth=("HD0001", "desk-pw-1")
        )
        wrong = await http.get(
            "/805ec0123456.cfg", headers={"User-Agent": YEALINK_UA}, auth=("HD0001", "desk-pw-2")
        )
    assert challenge.headers["WWW-Authenticate"].startswith("Basic ")
    assert ok.status_code == 200
    assert wrong.status_code == 401


async def test_configured_provisioning_credentials_replace_the_defaults() -> None:
    desk = msgspec.structs.replace(
        YEALINK, provisioning_user="prov-hd1", provisioning_password="prov-secret"
    )
    directory = msgspec.structs.replace(DIRECTORY, desks=[desk])
    server, _, _ = make_server(directory=directory)
    ua = {"User-Agent": YEALINK_UA}
    async with client(server) as http:
        default = await http.get("/805ec0123456.cfg", headers=ua, auth=YEALINK_AUTH)
        configured = await http.get(
            "/805ec0123456.cfg", headers=ua, auth=httpx.DigestAuth("prov-hd1", "prov-secret")
        )
    assert default.status_code == 401
    assert configured.status_code == 200


async def test_too_many_requests_from_one_address_are_refused() -> None:
    server, _, _ = make_server(rate_limit_per_minute=3)
    ua = {"User-Agent": YEALINK_UA}
    async with client(server, "127.0.0.5") as http:
        codes = [(await http.get("/805ec0123456.cfg", headers=ua)).status_code for _ in range(4)]
        limited = await http.get("/805ec0123456.cfg", headers=ua)
    async with client(server, "127.0.0.6") as other:
        fresh = await other.get("/805ec0123456.cfg", headers=ua)
    assert codes == [401, 401, 401, 429]
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert fresh.status_code == 401


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    server, unknown, _ = make_server(trusted_proxies=["127.0.0.1"], rate_limit_per_minute=2)
    ua = {"User-Agent": YEALINK_UA}
    async with client(server, "127.0.0.1") as proxy:
        behind = [
            (await proxy.get("/001565000001.cfg", headers={**ua, "X-Forwarded-For": ip}))
            for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        ]
    async with client(server, "127.0.0.9") as stranger:
        forged = [
            (await stranger.get("/805ec0123456.cfg", headers={**ua, "X-Forwarded-For": ip}))
            for ip in ["10.9.0.1", "10.9.0.2", "10.9.0.3"]
        ]
    # Three phones behind the proxy each get their own allowance ...
    assert [r.status_code for r in behind] == [401, 401, 401]
    assert unknown[0].address == "10.0.0.1"
    # ... while a client that is not a proxy cannot dodge the limit with the header.
    assert [r.status_code for r in forged] == [401, 401, 429]


async def test_rightmost_untrusted_forwarded_address_is_the_client() -> None:
    server, unknown, _ = make_server(trusted_proxies=["127.0.0.0/8"])
    headers = {"User-Agent": YEALINK_UA, "X-Forwarded-For": "6.6.6.6, 10.1.2.3, 127.0.0.2"}
    async with client(server, "127.0.0.1") as proxy:
        await proxy.get("/001565000001.cfg", headers=headers)
    assert unknown[0].address == "10.1.2.3"


async def test_unknown_phone_is_reported_once_with_mac_agent_and_address() -> None:
    server, unknown, _ = make_server()
    ua = {"User-Agent": "Fanvil X4U 2.10.2.6887 0c383e07ffff"}
    async with client(server, "127.0.0.7") as http:
        first = await http.get("/0c383e07ffff.cfg", headers=ua)
        again = await http.get("/0c383e07ffff.cfg", headers=ua)
    assert first.status_code == again.status_code == 401
    assert [(u.mac, u.user_agent, u.address, u.path) for u in unknown] == [
        ("0c383e07ffff", ua["User-Agent"], "127.0.0.7", "/0c383e07ffff.cfg")
    ]


async def test_unknown_device_reports_are_capped_per_minute_across_all_sources() -> None:
    server, unknown, _ = make_server(rate_limit_per_minute=0)
    async with client(server, "127.0.0.9") as http:
        for n in range(UNKNOWN_DEVICE_REPORTS_PER_MINUTE + 50):
            mac = f"805ec0{n:06x}"
            ua = f"Yealink SIP-T46S 66.86.0.15 {mac}"
            await http.get(f"/{mac}.cfg", headers={"User-Agent": ua})
    assert len(unknown) == UNKNOWN_DEVICE_REPORTS_PER_MINUTE


async def test_unknown_device_reports_carry_truncated_agent_and_path() -> None:
    server, unknown, _ = make_server()
    agent = "Yealink SIP-T46S 66.86.0.15 805ec0abcdef " + "A" * 10_000
    async with client(server) as http:
        await http.get("/" + "d/" * 3_000 + "805ec0abcdef.cfg", headers={"User-Agent": agent})
    [seen] = unknown
    assert len(seen.user_agent) <= UNKNOWN_DEVICE_FIELD_CHARS
    assert len(seen.path) <= UNKNOWN_DEVICE_FIELD_CHARS
    assert seen.user_agent.startswith("Yealink SIP-T46S")


async def test_unknown_device_event_is_published_on_the_provisioning_stream(
    js: JetStreamContext,
) -> None:
    await ensure_jetstream(js)
    server = ProvisioningServer(
        directory=lambda: DIRECTORY,
        settings=ProvisioningSettings(),
        sip=SIP,
        seats=DeskSeats(),
        nonce_key=b"k",
        origin="provisioner-test",
        report_unknown=lambda seen: publish_unknown_device(js, seen),
    )
    async with client(server, "127.0.0.8") as http:
        await http.get("/001565abcdef.cfg", headers={"User-Agent": YEALINK_UA})
    msg = await js.get_last_msg(streams.PROVISIONING.name, subjects.PROVISIONING_UNKNOWN_DEVICE)
    seen = msgspec.json.decode(msg.data or b"", type=UnknownDeviceSeen)
    assert (seen.mac, seen.address, seen.user_agent) == ("001565abcdef", "127.0.0.8", YEALINK_UA)


async def test_a_fetch_renders_the_newest_desk_state() -> None:
    seats = DeskSeats()
    server, _, served = make_server(seats=seats)
    ua = {"User-Agent": YEALINK_UA}
    async with client(server) as http:
        idle = await http.get("/805ec0123456.cfg", headers=ua, auth=YEALINK_AUTH)
        seats.apply(login("HD0001", "101"), 1)
        alice = await http.get("/805ec0123456.cfg", headers=ua, auth=YEALINK_AUTH)
        seats.apply(
            Roamed(
                event_id="e2",
                at=datetime(2026, 1, 1, tzinfo=UTC),
                cause=Cause(actor="user:102"),
                correlation_id="c2",
                desk="HD0001",
                from_user="101",
                user="102",
            ),
            2,
        )
        carol = await http.get("/805ec0123456.cfg", headers=ua, auth=YEALINK_AUTH)
    assert b"account.1.label = HD0001" in idle.content
    assert b"account.1.label = 101 Bob & Co" in alice.content
    assert b"linekey.2.value = 100" in alice.content
    assert b"account.1.label = 102 Carol" in carol.content
    assert b"linekey.6.value = 105" in carol.content
    assert len({s.config_version for s in served}) == 3


async def test_desk_state_follows_the_ledger_from_the_start(js: JetStreamContext) -> None:
    await ensure_jetstream(js)
    await js.publish(subjects.desk_ledger("HD0001"), encode_event(login("HD0001", "101")))
    seats = DeskSeats()
    sub = await follow_desk_ledger(js, seats)
    try:
        for _ in range(200):
            if seats.user_at("HD0001") == "101":
                break
            await asyncio.sleep(0.01)
        assert seats.user_at("HD0001") == "101"
        logout = LoggedOut(
            event_id="e9",
            at=datetime(2026, 1, 1, tzinfo=UTC),
            cause=Cause(actor="user:101"),
            correlation_id="c9",
            desk="HD0001",
            user="101",
            reason=LogoutReason.USER_CODE,
        )
        await js.publish(subjects.desk_ledger("HD0001"), encode_event(logout))
        for _ in range(200):
            if seats.user_at("HD0001") is None:
                break
            await asyncio.sleep(0.01)
        assert seats.user_at("HD0001") is None
    finally:
        await sub.unsubscribe()


async def test_no_secret_appears_in_any_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server, _, _ = make_server()
    ua = {"User-Agent": YEALINK_UA}
    async with client(server) as http:
        await http.get("/805ec0123456.cfg", headers=ua, auth=YEALINK_AUTH)
        await http.get("/805ec0123456.cfg", headers=ua, auth=httpx.DigestAuth("HD0001", "bad-pw"))
        await http.get("/001565abcdef.cfg", headers=ua, auth=("HD0001", "desk-pw-1"))
    assert caplog.records
    for record in caplog.records:
        text = repr(record.__dict__)
        assert "desk-pw-1" not in text
        assert "bad-pw" not in text


def rfc2069_authorization(challenge: str, user: str, password: str, uri: str) -> str:
    """A Digest answer without qop, as firmware that only knows RFC 2069 sends it."""
    nonce = challenge.split('nonce="', 1)[1].split('"', 1)[0]
    ha1 = hashlib.md5(f"{user}:{REALM}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"GET:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5'
    )


@pytest.mark.parametrize("allow_legacy", [False, True])
async def test_digest_without_qop_is_accepted_only_when_legacy_digest_is_allowed(
    allow_legacy: bool,
) -> None:
    server, _, served = make_server(allow_legacy_digest=allow_legacy)
    ua = {"User-Agent": YEALINK_UA}
    uri = "/805ec0123456.cfg"
    async with client(server) as http:
        first = await http.get(uri, headers=ua)
        header = rfc2069_authorization(
            first.headers["WWW-Authenticate"], "HD0001", "desk-pw-1", uri
        )
        answered = await http.get(uri, headers={**ua, "Authorization": header})
    assert answered.status_code == (200 if allow_legacy else 401)
    assert len(served) == (1 if allow_legacy else 0)


async def test_health_endpoint_answers_without_credentials() -> None:
    server, _, _ = make_server()
    async with client(server) as http:
        response = await http.get("/healthz")
    assert response.json() == {"status": "ok"}


async def raw_get(server: ProvisioningServer, raw_path: bytes, headers: dict[str, str]) -> int:
    """The status of a GET sent as the raw ASGI scope, so no client normalises the path
    (HTTP clients resolve ``..`` before sending, RFC 3986 §5.2.4; attackers don't)."""
    statuses: list[int] = []
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))

    path = raw_path.split(b"?", 1)[0].decode("latin-1")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": urllib.parse.unquote(path),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8081),
    }
    await asyncio.wait_for(server.app(scope, receive, send), timeout=5)
    [status] = statuses
    return status


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/../../805ec0123456.cfg",
        b"/x/../805ec0123456.cfg",
        b"/%2e%2e/%2E%2E/805ec0123456.cfg",
        b"/..%2f..%2f805ec0123456.cfg",
        b"/..%5c..%5c805ec0123456.cfg",
        b"/./805ec0123456.cfg",
        b"/%00/805ec0123456.cfg",
    ],
)
async def test_a_path_with_dot_segments_is_refused_even_with_valid_credentials(
    raw_path: bytes,
) -> None:
    server, _, served = make_server(auth="basic")
    token = base64.b64encode(b"HD0001:desk-pw-1").decode()
    headers = {"User-Agent": YEALINK_UA, "Authorization": f"Basic {token}"}
    assert await raw_get(server, b"/805ec0123456.cfg", headers) == 200
    assert await raw_get(server, raw_path, headers) == 404
    assert len(served) == 1


async def test_requests_that_are_no_phone_file_are_not_found() -> None:
    server, _, _ = make_server()
    async with client(server) as http:
        browser = await http.get("/805ec0123456.cfg", headers={"User-Agent": "curl/8"})
    passwd = await raw_get(server, b"/../../etc/passwd", {"User-Agent": YEALINK_UA})
    assert passwd == browser.status_code == 404
