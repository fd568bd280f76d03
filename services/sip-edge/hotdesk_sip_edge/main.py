"""The sip-edge service entrypoint: ``serve(ctx)`` runs one edge until ``ctx.stopping``."""

from __future__ import annotations

from hotdesk_runtime.context import ServiceContext

from .checksync import CheckSyncResponder, CheckSyncSender
from .edge import SipEdge
from .ivr_calls import IvrCalls
from .location import KvLocationStore
from .login_state import LedgerFollower, LoginMap
from .media.ivr_bridge import IvrBridge, IvrCommandRouter, SendBye
from .media.prompt_store import ObjectStorePromptSource


async def serve(ctx: ServiceContext) -> None:
    """Start the ledger follower, the location store, the IVR call handling, the
    check-sync responder and the SIP transports on ``ctx.config.sip``; stop cleanly
    when ``ctx.stopping`` is set."""
    logins = LoginMap()
    follower = LedgerFollower(ctx.js, logins)
    await follower.start()
    locations = await KvLocationStore.open(ctx.js)
    settings = ctx.config.sip
    prompts = ObjectStorePromptSource(ctx.js)
    router = IvrCommandRouter(ctx.nc, ctx.instance_id)

    async def open_bridge(call_id: str, offer: bytes, send_bye: SendBye) -> IvrBridge:
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
    await router.start()
    await edge.start()
    await checksync.start()
    try:
        await ctx.stopping.wait()
    finally:
        await checksync.close()
        await calls.close()
        await router.close()
        await edge.close()
        await follower.stop()
