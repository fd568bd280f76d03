"""The registrar's read of its own last write, guarded by the KV revision."""

from __future__ import annotations

import time

import pytest
from nats.js import JetStreamContext

from hotdesk_sip_edge.location import Binding, ConcurrentUpdate, KvLocationStore


def _binding(cseq: int) -> Binding:
    return Binding(
        contact="<sip:HD0001@127.0.0.1:5070>",
        uri="sip:HD0001@127.0.0.1:5070",
        expires_at=time.time() + 3600,
        call_id="c1",
        cseq=cseq,
    )


async def test_a_write_by_another_replica_is_seen_after_the_stale_save_fails(
    js: JetStreamContext,
) -> None:
    ours = await KvLocationStore.open(js)
    theirs = await KvLocationStore.open(js)
    await ours.save("HD0001", [_binding(1)], 0, 3600)
    bindings, revision = await ours.load_for_update("HD0001")
    assert [b.cseq for b in bindings] == [1]
    assert (bindings, revision) == await ours.load("HD0001")

    _, their_revision = await theirs.load("HD0001")
    await theirs.save("HD0001", [_binding(2)], their_revision, 3600)

    stale, stale_revision = await ours.load_for_update("HD0001")
    assert [b.cseq for b in stale] == [1]
    with pytest.raises(ConcurrentUpdate):
        await ours.save("HD0001", [_binding(3)], stale_revision, 3600)
    fresh, _ = await ours.load_for_update("HD0001")
    assert [b.cseq for b in fresh] == [2]
