"""The one place the ledger looks inside nats-py's objects.

The projection runner needs the core NATS connection behind a ``JetStreamContext``
(its own pull inbox, acks as requests) and needs to know whether that connection
authenticates only with user/password or a token, so the lean pull reader
(:mod:`.pull`) can open a second connection the same way. nats-py 2.16 offers neither
publicly: ``JetStreamContext`` keeps its client in ``_nc`` and the client keeps
credentials files, nkeys and JWT callbacks in private fields. Reading them here, and
nowhere else, keeps a nats-py upgrade that renames them a one-file change.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext


def client_of(js: JetStreamContext) -> Client:
    """The core NATS client a JetStream context publishes through."""
    client: Client = js._nc
    return client


@dataclass(frozen=True)
class PlainAuth:
    """How to open another plain connection to the server ``client`` is connected to."""

    url: str
    user: str | None
    password: str | None
    token: str | None


def plain_auth(client: Client) -> PlainAuth | None:
    """The URL and user/password or token of ``client``'s connection; ``None`` when it
    uses TLS, a credentials file, nkeys or a JWT (a second connection could not copy
    those as simply)."""
    url = client.connected_url
    if (
        url is None
        or url.scheme not in ("nats", "")
        or client.options.get("tls")
        or client._user_credentials is not None
        or client._nkeys_seed is not None
        or client._nkeys_seed_str is not None
        or client._user_jwt_cb is not None
    ):
        return None
    return PlainAuth(
        url=url.geturl(),
        user=client.options.get("user"),
        password=client.options.get("password"),
        token=client.options.get("token"),
    )
