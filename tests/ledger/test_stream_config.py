"""The ledger stream is built from the one definition in hotdesk_contracts."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext
from nats.js.errors import APIError

from hotdesk_contracts import streams
from hotdesk_ledger.store import EventStore, stream_config


def test_every_stream_config_round_trips_the_contracts_definition() -> None:
    for spec in streams.STREAMS:
        wire = stream_config(spec, replicas=3).as_dict()
        for key, value in streams.stream_api_config(spec, replicas=3).items():
            assert wire[key] == value, (spec.name, key)


async def test_the_created_ledger_stream_is_append_only_with_its_dedupe_window(
    js: JetStreamContext,
) -> None:
    await EventStore(js).ensure_stream()
    info = await js.stream_info(streams.LEDGER.name)
    assert info.config.duplicate_window == streams.LEDGER.duplicate_window_seconds
    assert info.config.deny_delete
    assert info.config.deny_purge
    await js.publish("hotdesk.ledger.desk.HD0001", b"{}")
    with pytest.raises(APIError):
        await js.purge_stream(streams.LEDGER.name)
