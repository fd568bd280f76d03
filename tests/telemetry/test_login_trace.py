"""One login is one trace: a SIPp desk dials ``*77*100*`` and types its PIN (RFC 2833),
the IVR writes the ledger, the provisioner renders the desk's files and has the edge
send a check-sync NOTIFY to the phone's SIP port, and the phone fetches its file over
digest-authed HTTP. Every service runs in this process on one tracer provider, so an
in-memory exporter sees every span: they must share one trace and hang together as a
tree from the edge's INVITE down to the HTTP fetch, and the logs of each hop must carry
that trace's id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hotdesk_contracts.directory import Config
from hotdesk_contracts.events import LoggedIn
from hotdesk_runtime.logging import JsonFormatter
from tests.e2e.sipp import start_sipp
from tests.e2e.system import (
    DESK_PASSWORD,
    PINS,
    PROVISIONER,
    SCENARIOS,
    running_system,
    sipp_desk_call,
)
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e

YEALINK_UA = "Yealink SIP-T46S 66.86.0.15 00:15:65:00:00:01"
MAC_CFG = "/001565000001.cfg"

EDGE, IVR, LEDGER, PROVISIONER_SCOPE = (
    "hotdesk_sip_edge",
    "hotdesk_ivr",
    "hotdesk_ledger",
    "hotdesk_provisioner",
)

# (span name, service) and the (span name, service) of its parent, hop by hop from the
# phone's INVITE to its HTTP fetch.
CHAIN: list[tuple[tuple[str, str], tuple[str, str] | None]] = [
    (("INVITE login", EDGE), None),
    (("publish FeatureDialled", EDGE), ("INVITE login", EDGE)),
    (("ivr login", IVR), ("publish FeatureDialled", EDGE)),
    (("publish PlayPrompts", IVR), ("ivr login", IVR)),
    (("process PlayPrompts", EDGE), ("publish PlayPrompts", IVR)),
    (("verify PIN", IVR), ("ivr login", IVR)),
    (("execute LogIn", LEDGER), ("ivr login", IVR)),
    (("publish LoggedIn", LEDGER), ("execute LogIn", LEDGER)),
    (("process LoggedIn", PROVISIONER_SCOPE), ("publish LoggedIn", LEDGER)),
    (("reprovision", PROVISIONER_SCOPE), ("process LoggedIn", PROVISIONER_SCOPE)),
    (("render config", PROVISIONER_SCOPE), ("reprovision", PROVISIONER_SCOPE)),
    (("request SendCheckSync", PROVISIONER_SCOPE), ("reprovision", PROVISIONER_SCOPE)),
    (("NOTIFY check-sync", EDGE), ("request SendCheckSync", PROVISIONER_SCOPE)),
    (("GET provisioning file", PROVISIONER_SCOPE), ("reprovision", PROVISIONER_SCOPE)),
    (("publish ConfigServed", PROVISIONER_SCOPE), ("GET provisioning file", PROVISIONER_SCOPE)),
]

# Log messages each hop writes while it works on the login, and the fields they carry.
HOP_LOGS = {
    "hot-desk call answered": ("call_id", "desk"),
    "PIN checked": ("call_id", "desk"),
    "ledger command executed": ("call_id", "desk"),
    "reprovision started": ("desk",),
    "check-sync sent": ("desk",),
    "provisioning file served": ("desk",),
}


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Every record at INFO and above, as the services' JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("tests"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def yealink_t46s(cfg: Config) -> Config:
    desks = [msgspec.structs.replace(d, vendor="yealink", model="T46S") for d in cfg.desks]
    return msgspec.structs.replace(cfg, desks=desks)


def key(span: ReadableSpan) -> tuple[str, str]:
    scope = span.instrumentation_scope
    return span.name, scope.name if scope is not None else ""


def trace_of(spans: list[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def login_trace(exporter: InMemorySpanExporter) -> list[ReadableSpan] | None:
    """The spans of the trace the ``INVITE login`` span started, once every hop of
    :data:`CHAIN` and every parent they name has finished; ``None`` before."""
    spans = list(exporter.get_finished_spans())
    roots = [s for s in spans if key(s) == ("INVITE login", EDGE)]
    if len(roots) != 1 or roots[0].context is None:
        return None
    found = trace_of(spans, roots[0].context.trace_id)
    ids = {s.context.span_id for s in found if s.context is not None}
    names = {key(s) for s in found}
    complete = all(hop in names for hop, _ in CHAIN)
    if complete and all(s.parent is None or s.parent.span_id in ids for s in found):
        return found
    return None


async def wait_for_login_trace(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    for _ in range(300):
        found = login_trace(exporter)
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    spans = exporter.get_finished_spans()
    seen = sorted((key(s), format(s.context.trace_id, "032x") if s.context else "") for s in spans)
    raise AssertionError(f"the login's trace never completed; finished spans: {seen}")


async def test_one_login_is_one_trace_from_the_invite_to_the_phones_config_fetch(
    nc: Client,
    js: JetStreamContext,
    tmp_path: Path,
    exported: InMemorySpanExporter,
    json_logs: io.StringIO,
) -> None:
    media = await RtpPeer().start()
    try:
        async with running_system(
            nc, js, (36500, 36599), extra=[PROVISIONER], configure=yealink_t46s
        ) as system:
            phone = await start_sipp(
                tmp_path, SCENARIOS / "checksync_uas.xml", name="phone", timeout_s=30
            )
            call = await sipp_desk_call(
                system,
                tmp_path,
                desk="HD0001",
                dial="*77*100*",
                digits=PINS["100"] + "#",
                rtp_listener=media.port,
                name="login",
                contact_port=phone.port,
            )
            assert call.returncode == 0, call.stderr[-2000:] + call.messages[-3000:]
            assert isinstance((await system.desk_ledger("HD0001"))[-1], LoggedIn)
            notified = await phone.finish(20)
            assert notified.returncode == 0, notified.stderr[-2000:] + notified.messages
            async with httpx.AsyncClient(base_url=system.provisioning_url, timeout=10) as http:
                fetched = await http.get(
                    MAC_CFG,
                    headers={"User-Agent": YEALINK_UA},
                    auth=httpx.DigestAuth("HD0001", DESK_PASSWORD),
                )
            assert fetched.status_code == 200, fetched.text
            assert "100 Ann Example" in fetched.text
            spans = await wait_for_login_trace(exported)
    finally:
        media.close()

    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    trace_ids = {s.context.trace_id for s in spans if s.context is not None}
    assert len(trace_ids) == 1
    trace_hex = format(trace_ids.pop(), "032x")

    # A tree: one root, the INVITE; every other span's parent is in the same trace.
    roots = [s for s in spans if s.parent is None]
    assert [key(r) for r in roots] == [("INVITE login", EDGE)]
    for span in spans:
        if span.parent is not None:
            assert span.parent.trace_id == span.context.trace_id  # type: ignore[union-attr]
            assert span.parent.span_id in by_id, f"{key(span)} hangs off a missing span"

    # Each hop has the parent it should: the context crossed every NATS message and
    # the reprovision's trace reached the HTTP fetch.
    def parents(hop: tuple[str, str]) -> set[tuple[str, str] | None]:
        return {
            key(by_id[s.parent.span_id]) if s.parent is not None else None
            for s in spans
            if key(s) == hop
        }

    for hop, parent in CHAIN:
        assert parent in parents(hop), f"{hop} is not a child of {parent}: {parents(hop)}"
    assert {scope for _, scope in map(key, spans)} == {EDGE, IVR, LEDGER, PROVISIONER_SCOPE}

    def one(name: str, scope: str) -> ReadableSpan:
        [span] = [s for s in spans if key(s) == (name, scope)]
        return span

    invite = one("INVITE login", EDGE).attributes or {}
    call_id = invite["sip.call_id"]
    assert (invite["sip.method"], invite["sip.status_code"]) == ("INVITE", 200)
    assert (invite["hotdesk.desk"], invite["hotdesk.user"]) == ("HD0001", "100")
    flow = one("ivr login", IVR).attributes or {}
    assert (flow["sip.call_id"], flow["hotdesk.user"]) == (call_id, "100")
    assert flow["messaging.destination.name"] == "hotdesk.edge.dial.HD0001"
    assert (one("verify PIN", IVR).attributes or {})["hotdesk.pin_ok"] is True
    appended = one("publish LoggedIn", LEDGER).attributes or {}
    assert appended["messaging.destination.name"] == "hotdesk.ledger.desk.HD0001"
    assert appended["messaging.system"] == "nats"
    notify = one("NOTIFY check-sync", EDGE).attributes or {}
    assert (notify["sip.method"], notify["hotdesk.desk"], notify["sip.status_code"]) == (
        "NOTIFY",
        "HD0001",
        200,
    )
    fetch = one("GET provisioning file", PROVISIONER_SCOPE).attributes or {}
    assert (fetch["hotdesk.desk"], fetch["http.response.status_code"]) == ("HD0001", 200)
    assert fetch["url.path"] == MAC_CFG
    # The digest challenge before it named no desk: it is no part of the login.
    challenges = [
        s
        for s in exported.get_finished_spans()
        if key(s) == ("GET provisioning file", PROVISIONER_SCOPE)
        and (s.attributes or {}).get("http.response.status_code") == 401
    ]
    assert challenges
    assert all(s.context is not None for s in challenges)
    assert trace_hex not in {format(s.context.trace_id, "032x") for s in challenges if s.context}

    # Nothing secret in any span: the PIN is neither a value nor, in any form, a key.
    for span in spans:
        for name, value in (span.attributes or {}).items():
            assert value != PINS["100"], f"{key(span)} carries the PIN in {name}"
            assert "pin" not in name or name == "hotdesk.pin_ok", name
            assert "digit" not in name, name

    # The logs of every hop carry the login's trace id (and the call and desk).
    records = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    for message, fields in HOP_LOGS.items():
        mine = [r for r in records if r["message"] == message and r.get("trace_id") == trace_hex]
        assert mine, f"no {message!r} log carries the login's trace id"
        for field in fields:
            assert mine[0].get(field), f"{message!r} has no {field}: {mine[0]}"
    assert any(r.get("call_id") == call_id for r in records if r["message"] == "PIN checked")
