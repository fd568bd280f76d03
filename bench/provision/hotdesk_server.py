"""The provisioning server as its own process for the benchmark:
``python -m bench.provision.hotdesk_server <port> <basic|digest> <desks>``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import uvicorn

from hotdesk_contracts.directory import ProvisioningSettings
from hotdesk_contracts.events import Cause, LoggedIn
from hotdesk_provisioner.seats import DeskSeats
from hotdesk_provisioner.server import ProvisioningServer

from .fleet import SIP, fleet


def main(argv: list[str]) -> None:
    port, auth, count = int(argv[0]), argv[1], int(argv[2])
    directory = fleet(count)
    seats = DeskSeats()
    for n, desk in enumerate(directory.desks, start=1):
        if n % 2 == 0:
            seats.apply(
                LoggedIn(
                    event_id=f"e{n}",
                    at=datetime(2026, 1, 1, tzinfo=UTC),
                    cause=Cause(actor="bench"),
                    correlation_id=f"c{n}",
                    desk=desk.name,
                    user=f"{200 + n % 50}",
                ),
                n,
            )
    server = ProvisioningServer(
        directory=lambda: directory,
        settings=ProvisioningSettings(auth=auth, rate_limit_per_minute=0),  # type: ignore[arg-type]
        sip=SIP,
        seats=seats,
        nonce_key=b"bench",
        origin="bench",
    )
    uvicorn.run(
        server.app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="uvloop",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
