"""A registering SIP client on a current libre/baresip stack (the ``baresip-python``
wheel bundles libre 4.x, which answers SHA-256 digest challenges, RFC 8760).

Run as ``python -m tests.sip_edge.libre_client USER PASSWORD HOST:PORT``: registers
once, unregisters, and prints one JSON line ``{"registered": bool, "status": int|null}``.
It runs in a process of its own because the stack keeps one SIP thread per process.
"""

from __future__ import annotations

import asyncio
import json
import sys

from baresip import Account, Config, Runtime
from baresip.errors import RegistrationError
from baresip.ua import UserAgent


async def register(user: str, password: str, host_port: str) -> dict[str, object]:
    runtime = Runtime(native_log_level="error")
    await runtime.start(Config(net_interface="127.0.0.1", audio_driver="aumem"))
    try:
        account = Account(user=user, domain=host_port, password=password, reg_interval=600)
        agent = await UserAgent.create(runtime, account)
        try:
            await agent.register(timeout=10)
        except RegistrationError as exc:
            return {"registered": False, "status": getattr(exc, "status", None)}
        await agent.unregister(timeout=10)
        return {"registered": True, "status": 200}
    finally:
        await runtime.close()


if __name__ == "__main__":
    user, password, host_port = sys.argv[1:4]
    print(json.dumps(asyncio.run(register(user, password, host_port))), flush=True)
