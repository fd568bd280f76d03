"""The edge's prompt source over a real NATS object store."""

from __future__ import annotations

from nats.js import JetStreamContext

from hotdesk_contracts import streams
from hotdesk_sip_edge.media.prompt_store import ObjectStorePromptSource


async def test_prompts_come_from_the_store_with_english_fallback_and_a_cache(
    js: JetStreamContext,
) -> None:
    source = ObjectStorePromptSource(js)
    assert await source.get("en/enter-pin") is None  # no bucket yet
    store = await js.create_object_store(streams.PROMPTS.bucket)
    await store.put("en/enter-pin", b"english")
    await store.put("de/enter-pin", b"deutsch")
    await store.put("en/goodbye", b"bye")
    assert await source.get("en/enter-pin") == b"english"
    assert await source.get("de/enter-pin") == b"deutsch"
    assert await source.get("de/goodbye") == b"bye"  # no German one: English
    assert await source.get("en/nothing") is None
    assert await source.get("fr/nothing") is None
    await store.delete("en/goodbye")
    assert await source.get("en/goodbye") == b"bye"  # cached
    source.invalidate()
    assert await source.get("en/goodbye") is None
