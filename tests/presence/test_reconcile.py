"""Desk online state reconciled with the registrations bucket on a real nats-server: a
desk whose bindings lapsed with no ``expired`` event (its edge died) goes offline, a
desk with a live binding stays online, and a registration applied while the check runs
wins over it."""

from __future__ import annotations

import asyncio
import time

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.messages import RegistrationChanged
from hotdesk_presence.projections import BusProjectionRunner, DeskStatus, DeskStatusFold
from hotdesk_presence.reconcile import RegistrationReconciler, registration_key
from hotdesk_runtime.nats import ensure_jetstream
from hotdesk_sip_edge.location import Binding, KvLocationStore, aor_key
from tests.presence.factories import registration, reprovision


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def binding(desk: str, expires_at: float, port: int = 5062) -> Binding:
    uri = f"sip:{desk}@127.0.0.1:{port}"
    return Binding(
        contact=f"<{uri}>",
        uri=uri,
        expires_at=expires_at,
        call_id=f"reg-{desk}-{port}",
        cseq=1,
        edge="edge-gone",
    )


async def publish(js: JetStreamContext, event: RegistrationChanged) -> None:
    await js.publish(subjects.edge_registration(event.aor, event.kind), msgspec.json.encode(event))


async def status_of(runner: BusProjectionRunner[DeskStatus, object], desk: str) -> DeskStatus:
    status = await runner.get(desk)
    assert status is not None
    return status


async def test_desks_whose_bindings_lapsed_go_offline_and_live_ones_stay(
    js: JetStreamContext,
) -> None:
    await ensure_jetstream(js)
    clock = Clock()
    locations = await KvLocationStore.open(js)
    # Bindings as an edge stores them; the edge then dies: no expired event will come.
    await locations.save("HD0001", [binding("HD0001", clock.now + 60)], 0, 3600)
    await locations.save("HD0002", [binding("HD0002", clock.now + 600)], 0, 3600)
    for desk in ("HD0001", "HD0002"):
        await publish(js, registration(desk, "registered"))
    await js.publish(
        subjects.provisioning_event("HD0001"), msgspec.json.encode(reprovision("HD0001"))
    )
    runner = BusProjectionRunner(js, DeskStatusFold())
    await runner.catch_up()
    reconciler = RegistrationReconciler(js, clock=clock, grace=2.0)
    assert await reconciler.tick() == []
    assert (await status_of(runner, "HD0001")).online

    clock.now += 61  # HD0001's binding expired less than the grace ago: still live
    assert await reconciler.tick() == []
    clock.now += 2
    assert await reconciler.tick() == ["HD0001"]
    lapsed = await status_of(runner, "HD0001")
    assert (lapsed.online, lapsed.online_since) == (False, None)
    # What the bus told about the desk stays.
    assert lapsed.reprovision == "confirmed"
    assert lapsed.user_agent.startswith("Yealink")
    assert (await status_of(runner, "HD0002")).online
    # Nothing more to do, and the fold goes on from where it was.
    assert await reconciler.tick() == []
    await publish(js, registration("HD0001", "registered", 20))
    assert await runner.catch_up() == 1
    assert (await status_of(runner, "HD0001")).online
    await runner.stop()


async def test_a_key_removed_by_its_per_message_ttl_takes_the_desk_offline(
    js: JetStreamContext,
) -> None:
    await ensure_jetstream(js)
    locations = await KvLocationStore.open(js)
    # The registrations key is the AOR's user part for desk names, as the edge writes it.
    assert registration_key("HD0003") == aor_key("HD0003")
    await locations.save("HD0003", [binding("HD0003", time.time() + 1)], 0, ttl=1)
    await publish(js, registration("HD0003", "registered"))
    runner = BusProjectionRunner(js, DeskStatusFold())
    await runner.catch_up()
    reconciler = RegistrationReconciler(js, grace=3600.0)  # only the key's absence counts
    assert await reconciler.tick() == []
    kv = await js.key_value(streams.REGISTRATIONS.bucket)
    for _ in range(300):
        try:
            entry = await kv.get("HD0003")
        except KeyNotFoundError:
            break
        if not entry.value:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the server never removed the key")
    assert await reconciler.tick() == ["HD0003"]
    assert not (await status_of(runner, "HD0003")).online
    await runner.stop()


async def test_a_registration_applied_during_the_check_wins(js: JetStreamContext) -> None:
    await ensure_jetstream(js)
    locations = await KvLocationStore.open(js)
    await publish(js, registration("HD0001", "registered"))
    runner = BusProjectionRunner(js, DeskStatusFold())
    await runner.catch_up()

    class Racing(RegistrationReconciler):
        """Its first look at the bindings is stale: the phone re-registers (binding
        stored, event applied) right after the lookup found nothing."""

        raced = False

        async def live_bindings(self, desk: str) -> int:
            seen = await super().live_bindings(desk)
            if not self.raced:
                self.raced = True
                await locations.save(desk, [binding(desk, time.time() + 60)], 0, 3600)
                await publish(js, registration(desk, "registered", 1))
                assert await runner.catch_up() == 1
            return seen

    reconciler = Racing(js)
    assert await reconciler.tick() == []
    assert reconciler.raced
    status = await status_of(runner, "HD0001")
    assert status.online
    await runner.stop()
