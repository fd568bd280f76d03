"""The pure parts of the edge's own calls and requests: logout-key detection, the UAS
BYE, the check-sync NOTIFY, its targets and results."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from hotdesk_contracts.dialplan import Login, Logout
from hotdesk_sip_edge.awaited import AwaitedTransaction
from hotdesk_sip_edge.blf.subscriptions import SubscribeRequest, Subscriptions
from hotdesk_sip_edge.blf_notifier import ANSWER_BYTES, BlfNotifier
from hotdesk_sip_edge.checksync import CheckSyncSender, best_status, binding_target
from hotdesk_sip_edge.ivr_calls import IvrCalls, IvrDialog, feature_of, is_logout_key, source_of
from hotdesk_sip_edge.location import Binding, MemoryLocationStore
from hotdesk_sip_edge.media.ivr_bridge import IvrBridge
from hotdesk_sip_edge.sip.headers import parse_via
from hotdesk_sip_edge.sip.message import Headers, SipRequest, SipResponse, parse
from hotdesk_sip_edge.sip.transaction import ClientTransaction, TimedOut
from hotdesk_sip_edge.sip.transport import Source


class FakeTransport:
    def __init__(self, network: FakeNetwork) -> None:
        self.network = network

    def send_to(self, data: bytes, target: Source) -> bool:
        request = parse(data)
        assert isinstance(request, SipRequest)
        self.network.sent.append((request, target))
        self.network.direct.append(target)
        return True


class FakeNetwork:
    host = "192.0.2.10"
    port = 5060

    def __init__(self) -> None:
        self.sent: list[tuple[SipRequest, Source]] = []
        self.direct: list[Source] = []
        """Targets sent to through the transport at once (no lookup, no connection)."""
        self.tracked: list[tuple[str, ClientTransaction, Source]] = []
        self.transport = FakeTransport(self)

    async def send_request(self, request: SipRequest, target: Source) -> bool:
        self.sent.append((request, target))
        return True

    async def send_serialized(self, data: bytes, target: Source) -> bool:
        request = parse(data)
        assert isinstance(request, SipRequest)
        return await self.send_request(request, target)

    def send_response(self, response: SipResponse, target: Source) -> None:
        pass

    def track(self, branch: str, tx: ClientTransaction, target: Source) -> None:
        self.tracked.append((branch, tx, target))


def test_logout_key_is_recognised_by_the_dialled_uri_only() -> None:
    assert is_logout_key("*77*5*", "*77*5*")
    assert is_logout_key("logoutkey", "sip:logoutkey@pbx.example")
    assert not is_logout_key("*77*5*", "")
    assert not is_logout_key("*77*5*", "logoutkey")


def test_hot_desk_codes_map_to_the_ivr_features() -> None:
    assert feature_of(Login("100")) == ("login", "100")
    assert feature_of(Logout()) == ("logout", "")


def test_requests_go_back_to_the_stamped_source_address() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKx;received=198.51.100.7;rport=40000")
    assert source_of(via[0]) == Source("UDP", "198.51.100.7", 40000)
    plain = parse_via("SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKy")
    assert source_of(plain[0]) == Source("TCP", "127.0.0.1", 5070)


async def test_uas_bye_swaps_the_dialog_and_follows_a_strict_route() -> None:
    async def no_bridge(call_id: str, offer: bytes, send_bye: object, peer: str) -> IvrBridge:
        raise AssertionError("not used")

    calls = IvrCalls(open_bridge=no_bridge, on_bridge=lambda b: None, logout_key_uri=lambda: "")
    network = FakeNetwork()
    calls.attach(network)
    dialog = IvrDialog(
        call_id="c1",
        local_tag="ours",
        remote_tag="theirs",
        local_uri="<sip:*77*100*@192.0.2.10>",
        remote_uri="<sip:HD0001@192.0.2.10>;tag=theirs",
        remote_target="sip:HD0001@10.0.0.5:5062",
        route_set=["<sip:sbc.example:5060>"],
        target=Source("UDP", "198.51.100.7", 5060),
        bridge=IvrBridge.__new__(IvrBridge),
        ok=SipResponse.__new__(SipResponse),
        local_cseq=7,
    )
    request, branch = calls.bye_request(dialog)
    message = parse(request.serialize())
    assert isinstance(message, SipRequest)
    assert message.method == "BYE"
    # RFC 3261 §12.2.1.1: a strict router becomes the Request-URI, the remote target
    # goes last in the Route set.
    assert message.uri == "sip:sbc.example:5060"
    assert message.headers.get_all("Route") == ["<sip:HD0001@10.0.0.5:5062>"]
    assert (message.from_.tag, message.to.tag) == ("ours", "theirs")
    assert (message.cseq.seq, message.call_id) == (8, "c1")
    assert message.top_via.branch == branch


def test_best_status_prefers_a_success_then_the_lowest_failure() -> None:
    assert best_status([0, 481, 200]) == 200
    assert best_status([0, 486, 408]) == 408
    assert best_status([0, 0]) == 0


async def test_notify_transaction_reports_0_when_timer_f_fires() -> None:
    tx = AwaitedTransaction(b"NOTIFY", "NOTIFY", 0.0, reliable=False)
    tx.fire(0.5)
    assert not tx.final.done()
    tx.fire(32.0)
    assert tx.final.result() == 0


async def test_notify_transaction_reports_the_final_status_not_a_provisional() -> None:
    tx = AwaitedTransaction(b"NOTIFY", "NOTIFY", 0.0, reliable=True)
    assert tx.receive(100, 0.1)
    assert not tx.final.done()
    assert tx.receive(200, 0.2)
    assert tx.final.result() == 200


def binding(**changes: object) -> Binding:
    fields: dict[str, object] = {
        "contact": "<sip:HD0001@10.0.0.5:5062>",
        "uri": "sip:HD0001@10.0.0.5:5062",
        "expires_at": 1000.0,
        "call_id": "reg",
        "cseq": 1,
        "source_host": "198.51.100.7",
        "source_port": 40000,
    }
    fields.update(changes)
    return Binding(**fields)  # type: ignore[arg-type]


def test_check_sync_goes_through_the_path_else_to_the_nat_source() -> None:
    request = SipRequest(Headers(), b"", "NOTIFY", "sip:HD0001@10.0.0.5:5062")
    via_path = binding(path=["<sip:sbc.example:5080;lr>"])
    assert binding_target(request, via_path) == Source("UDP", "sbc.example", 5080)
    assert request.headers.get_all("Route") == ["<sip:sbc.example:5080;lr>"]
    natted = binding(behind_nat=True)
    assert binding_target(request, natted) == Source("UDP", "198.51.100.7", 40000)
    direct = binding()
    assert binding_target(request, direct) == Source("UDP", "10.0.0.5", 5062)


async def test_check_sync_notify_is_out_of_dialog_and_terminated() -> None:
    store = MemoryLocationStore()
    await store.save("HD0001", [binding()], 0, 60)
    network = FakeNetwork()
    sender = CheckSyncSender(network=lambda: network, locations=store, clock=lambda: 10.0)
    task = asyncio.create_task(sender.send("HD0001", "check-sync;reboot=false"))
    for _ in range(100):
        if network.tracked:
            break
        await asyncio.sleep(0)
    request, target = network.sent[0]
    message = parse(request.serialize())
    assert isinstance(message, SipRequest)
    assert (message.method, message.uri) == ("NOTIFY", "sip:HD0001@10.0.0.5:5062")
    assert message.headers.get("Event") == "check-sync;reboot=false"
    assert message.headers.get("Subscription-State") == "terminated"
    assert message.headers.get("Max-Forwards") == "70"
    assert message.to.tag is None
    assert message.from_.tag
    assert target == Source("UDP", "10.0.0.5", 5062)
    _, tx, _ = network.tracked[0]
    tx.receive(200, 10.1)
    assert await task == (200, 1)


async def test_check_sync_of_a_desk_without_binding_sends_nothing() -> None:
    network = FakeNetwork()
    sender = CheckSyncSender(
        network=lambda: network, locations=MemoryLocationStore(), clock=lambda: 10.0
    )
    assert await sender.send("HD0002", "check-sync") == (0, 0)
    assert network.sent == []


@pytest.mark.parametrize("ending", ["481", "timer F"])
async def test_blf_subscription_ends_when_its_notify_is_answered_481_or_never(
    ending: str,
) -> None:
    subscriptions = Subscriptions(["101"])
    outcome = subscriptions.subscribe(
        SubscribeRequest(
            call_id="sub-1",
            from_tag="ft",
            to_tag=None,
            cseq=1,
            event="dialog",
            extension="101",
            entity_uri="sip:101@192.0.2.10",
            from_uri="sip:HD0002@192.0.2.10",
            to_uri="sip:101@192.0.2.10",
            contact="sip:HD0002@10.0.0.5:5062",
            authenticated=True,
            expires=600,
        ),
        0.0,
    )
    assert outcome.notify is not None
    network = FakeNetwork()
    notifier = BlfNotifier(
        subscriptions=subscriptions,
        auth=lambda: None,  # type: ignore[arg-type,return-value]
        passwords=lambda user: None,
        network=lambda: network,
    )
    await notifier.send(outcome.notify)
    request, target = network.sent[0]
    assert (request.method, target) == ("NOTIFY", Source("UDP", "10.0.0.5", 5062))
    _, tx, _ = network.tracked[0]
    assert notifier.unanswered == 1
    if ending == "481":
        tx.receive(481, 1.0)
    else:
        assert tx.deadline is not None
        while not any(isinstance(action, TimedOut) for action in tx.fire(tx.deadline)):
            assert tx.deadline is not None
    assert len(subscriptions) == 0
    assert notifier.unanswered == 0
    tx.receive(481, 2.0)  # a late answer ends nothing twice
    assert notifier.unanswered == 0


async def test_blf_notifies_to_an_address_go_straight_out_to_a_host_name_via_the_lookup() -> None:
    subscriptions = Subscriptions(["101"])
    notifies = []
    for n, contact in enumerate(["sip:HD0002@10.0.0.5:5062", "sip:HD0003@phone.example.com"]):
        outcome = subscriptions.subscribe(
            SubscribeRequest(
                call_id=f"sub-path-{n}",
                from_tag="ft",
                to_tag=None,
                cseq=1,
                event="dialog",
                extension="101",
                entity_uri="sip:101@192.0.2.10",
                from_uri="sip:HD0002@192.0.2.10",
                to_uri="sip:101@192.0.2.10",
                contact=contact,
                authenticated=True,
                expires=600,
            ),
            0.0,
        )
        assert outcome.notify is not None
        notifies.append(outcome.notify)
    network = FakeNetwork()
    notifier = BlfNotifier(
        subscriptions=subscriptions,
        auth=lambda: None,  # type: ignore[arg-type,return-value]
        passwords=lambda user: None,
        network=lambda: network,
    )
    for notify in notifies:
        await notifier.send(notify)
    assert [target for _, target in network.sent] == [
        Source("UDP", "10.0.0.5", 5062),
        Source("UDP", "phone.example.com", 5060),
    ]
    assert network.direct == [Source("UDP", "10.0.0.5", 5062)]
    assert [target for _, _, target in network.tracked] == [t for _, t in network.sent]


async def test_blf_notifies_follow_a_refresh_that_moves_the_remote_target() -> None:
    subscriptions = Subscriptions(["101"])
    request = SubscribeRequest(
        call_id="sub-2",
        from_tag="ft",
        to_tag=None,
        cseq=1,
        event="dialog",
        extension="101",
        entity_uri="sip:101@192.0.2.10",
        from_uri="sip:HD0002@192.0.2.10",
        to_uri="sip:101@192.0.2.10",
        contact="sip:HD0002@10.0.0.5:5062",
        authenticated=True,
        expires=600,
    )
    first = subscriptions.subscribe(request, 0.0)
    assert first.notify is not None
    assert first.local_tag is not None
    network = FakeNetwork()
    notifier = BlfNotifier(
        subscriptions=subscriptions,
        auth=lambda: None,  # type: ignore[arg-type,return-value]
        passwords=lambda user: None,
        network=lambda: network,
    )
    await notifier.send(first.notify)
    moved = replace(request, to_tag=first.local_tag, cseq=2, contact="sip:HD0002@10.0.0.9:5070")
    refreshed = subscriptions.subscribe(moved, 1.0)
    assert refreshed.notify is not None
    await notifier.send(refreshed.notify)
    (change,) = subscriptions.state_changed("101", [], 2.0)
    await notifier.send(change)
    assert [(r.uri, r.cseq.seq, t) for r, t in network.sent] == [
        ("sip:HD0002@10.0.0.5:5062", 1, Source("UDP", "10.0.0.5", 5062)),
        ("sip:HD0002@10.0.0.9:5070", 2, Source("UDP", "10.0.0.9", 5070)),
        ("sip:HD0002@10.0.0.9:5070", 3, Source("UDP", "10.0.0.9", 5070)),
    ]
    branches = {r.top_via.branch for r, _ in network.sent}
    assert len(branches) == 3
    assert [b for b, _, _ in network.tracked] == [r.top_via.branch for r, _ in network.sent]


async def test_blf_fan_out_has_room_while_the_unanswered_notifies_answers_fit_the_socket() -> None:
    subscriptions = Subscriptions(["101"])
    notifies = []
    for n in range(4):
        outcome = subscriptions.subscribe(
            SubscribeRequest(
                call_id=f"sub-room-{n}",
                from_tag="ft",
                to_tag=None,
                cseq=1,
                event="dialog",
                extension="101",
                entity_uri="sip:101@192.0.2.10",
                from_uri="sip:HD0002@192.0.2.10",
                to_uri="sip:101@192.0.2.10",
                contact=f"sip:HD0002@10.0.0.5:{5062 + n}",
                authenticated=True,
                expires=600,
            ),
            0.0,
        )
        assert outcome.notify is not None
        notifies.append(outcome.notify)
    network = FakeNetwork()
    notifier = BlfNotifier(
        subscriptions=subscriptions,
        auth=lambda: None,  # type: ignore[arg-type,return-value]
        passwords=lambda user: None,
        network=lambda: network,
        receive_buffer=lambda: 3 * ANSWER_BYTES,
    )
    rooms = []
    for notify in notifies[:3]:
        rooms.append(notifier.room())
        await notifier.send(notify)
    assert rooms == [True, True, True]
    assert not notifier.room()  # three answers may be queued: the socket holds no more
    _, first, _ = network.tracked[0]
    first.receive(200, 1.0)
    await asyncio.sleep(0)
    assert notifier.room()
    unknown_size = BlfNotifier(
        subscriptions=subscriptions,
        auth=lambda: None,  # type: ignore[arg-type,return-value]
        passwords=lambda user: None,
        network=lambda: network,
    )
    assert not unknown_size.room()
