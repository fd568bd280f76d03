"""The sip-edge service entrypoint: ``serve(ctx)`` runs one edge until ``ctx.stopping``."""

from __future__ import annotations

from hotdesk_runtime.context import ServiceContext

from .edge import SipEdge
from .location import KvLocationStore
from .login_state import LedgerFollower, LoginMap


async def serve(ctx: ServiceContext) -> None:
    """Start the ledger follower, the location store and the SIP transports on
    ``ctx.config.sip``; stop cleanly when ``ctx.stopping`` is set."""
    logins = LoginMap()
    follower = LedgerFollower(ctx.js, logins)
    await follower.start()
    locations = await KvLocationStore.open(ctx.js)

    async def publish(subject: str, data: bytes) -> None:
        await ctx.nc.publish(subject, data)

    edge = SipEdge(
        settings=ctx.config.sip,
        directory=lambda: ctx.directory,
        locations=locations,
        logins=logins,
        publish=publish,
        instance_id=ctx.instance_id,
    )
    await edge.start()
    try:
        await ctx.stopping.wait()
    finally:
        await edge.close()
        await follower.stop()
