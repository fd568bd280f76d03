"""The sip-edge service entrypoint: ``serve(ctx)`` runs one edge until ``ctx.stopping``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

from hotdesk_contracts.directory import Directory
from hotdesk_runtime.context import ServiceContext

from .blf.subscriptions import Subscriptions
from .blf.watch import BlfWatch, expire_subscriptions
from .blf_notifier import BlfNotifier
from .checksync import CheckSyncResponder, CheckSyncSender
from .edge import SipEdge, tune_garbage_collector
from .edge_metrics import EdgeCounters, edge_gauges, register_edge_metrics
from .ivr_calls import IvrCalls
from .location import KvLocationStore
from .login_state import LedgerFollower, LoginMap
from .media.ivr_bridge import IvrBridge, IvrCommandRouter, SendBye
from .media.prompt_store import ObjectStorePromptSource
from .media.session import MediaAddressError, check_media_address

log = logging.getLogger("hotdesk.sip_edge")

READY_PARTS = ("ledger-follower", "ivr-router", "sip-transports", "check-sync", "blf-watch")
"""What ``/readyz`` waits for: who sits where replayed from the ledger, the command
subscriptions bound at the server, the SIP transports listening, the BLF watch past the
bucket's current values."""


async def _logged(name: str, job: Awaitable[None]) -> None:
    """Run a background job; a failure is logged rather than lost in the loop."""
    try:
        await job
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s stopped", name)


async def _drain(edge: SipEdge, calls: IvrCalls, seconds: float) -> None:
    """Refuse new calls and let the IVR calls in progress end (a login half typed is
    not cut off by a rolling update), for at most ``seconds``."""
    edge.draining = True
    if not calls.dialogs or seconds <= 0:
        return
    log.info(
        "stopping: new calls refused, waiting for the calls in progress",
        extra={"calls": len(calls.dialogs), "drain_seconds": seconds},
    )
    left = await calls.drained(seconds)
    if left:
        log.warning(
            "stopping: calls still up after the drain time are hung up", extra={"calls": left}
        )
    else:
        log.info("stopping: every call ended")


async def serve(ctx: ServiceContext) -> None:
    """Start the ledger follower, the location store, the IVR call handling, the
    check-sync responder, the BLF notifier with its KV watch and expiry loop, and the
    SIP transports on ``ctx.config.sip``; stop cleanly when ``ctx.stopping`` is set."""
    ctx.expect(*READY_PARTS)
    settings = ctx.config.sip
    try:
        check_media_address(settings.advertised_host)
    except MediaAddressError as exc:
        # Every IVR call would fail with 503: refuse to start with the reason instead.
        log.error("cannot start: %s", exc)
        raise
    logins = LoginMap()
    follower = LedgerFollower(ctx.js, logins)
    await follower.start()
    ctx.ready_when("ledger-follower", follower.caught_up)
    locations = await KvLocationStore.open(ctx.js)
    prompts = ObjectStorePromptSource(ctx.js)
    router = IvrCommandRouter(ctx.nc, ctx.instance_id)

    async def open_bridge(
        call_id: str, offer: bytes, send_bye: SendBye, peer_host: str
    ) -> IvrBridge:
        return await IvrBridge.answer_call(
            nc=ctx.nc,
            edge_id=ctx.instance_id,
            call_id=call_id,
            send_bye=send_bye,
            offer=offer,
            local_host=settings.advertised_host,
            port_range=(settings.rtp_port_min, settings.rtp_port_max),
            prompts=prompts,
            media_timeout=settings.media_timeout_seconds,
            bind_host=settings.listen,
            peer_hosts=[peer_host],
            # Silence after a prompt longer than the IVR's own digit timeout means the
            # IVR is gone: the bridge then plays the error prompt and hangs up.
            ivr_silence_seconds=2 * ctx.directory.policies.pin_digit_timeout_seconds,
        )

    calls = IvrCalls(
        open_bridge=open_bridge,
        on_bridge=router.add,
        logout_key_uri=lambda: ctx.config.sip.logout_key_uri,
    )

    async def publish(subject: str, data: bytes) -> None:
        await ctx.nc.publish(subject, data)

    edge = SipEdge(
        settings=settings,
        directory=lambda: ctx.directory,
        locations=locations,
        logins=logins,
        publish=publish,
        instance_id=ctx.instance_id,
        hotdesk=calls,
    )
    calls.attach(edge)
    edge.dialogs = calls
    checksync = CheckSyncResponder(
        ctx.nc, CheckSyncSender(network=lambda: edge, locations=locations), ctx.instance_id
    )
    subscriptions = Subscriptions(
        [e.number for e in ctx.directory.extensions],
        min_expires=min(60, settings.max_expires),
        max_expires=settings.max_expires,
    )
    blf = BlfNotifier(
        subscriptions=subscriptions,
        auth=lambda: edge.auth,
        passwords=edge.passwords,
        network=lambda: edge,
        receive_buffer=lambda: edge.transport.udp_receive_buffer,
    )
    edge.subscriptions = blf

    async def directory_changed(_old: Directory, new: Directory) -> None:
        for notify in subscriptions.set_extensions(
            [e.number for e in new.extensions], time.monotonic()
        ):
            await blf.send(notify)

    ctx.on_directory_change(directory_changed)
    await router.start()
    await edge.start()
    ctx.set_ready("sip-transports", True)
    register_edge_metrics(
        EdgeCounters(
            transport=lambda: edge.transport.stats,
            auth=lambda: edge.auth.stats,
            registrar=lambda: edge.registrar.stats,
            active_calls=lambda: (
                len(calls.dialogs) + (len(edge.proxy.calls) if edge.proxy is not None else 0)
            ),
        )
    )
    await checksync.start()
    await ctx.subscriptions_bound()  # commands for this edge reach it from now on
    ctx.set_ready("ivr-router", True)
    ctx.set_ready("check-sync", True)
    gauges = edge_gauges(ctx.js, follower)
    # What start-up made (directory, codecs, caches) lives as long as the process: out
    # of the collector's sight, a full collection walks only what calls and
    # registrations hold, and pauses the RTP of every call for far less. Collections
    # also run less often (tune_garbage_collector says why).
    tune_garbage_collector()
    watch = BlfWatch(
        ctx.js, subscriptions, blf.send, domain=settings.advertised_host, room=blf.room
    )
    ctx.ready_when("blf-watch", watch.ready)
    tasks = [
        asyncio.create_task(_logged("BLF watch", watch.run(ctx.stopping))),
        asyncio.create_task(
            _logged("BLF expiry", expire_subscriptions(subscriptions, blf.send, ctx.stopping))
        ),
        asyncio.create_task(gauges.run(ctx.stopping)),
    ]
    ctx.watch_task("blf-watch", tasks[0])
    try:
        await ctx.stopping.wait()
        await _drain(edge, calls, settings.drain_seconds)
    finally:
        await blf.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await checksync.close()
        await calls.close()
        await router.close()
        await edge.close()
        await follower.stop()
