"""Prompt audio for the media sessions, read from the prompt object store.

The IVR installs prompt sets into the bucket (``hotdesk_ivr.prompts``); the edge only
reads them. Found prompts are cached in memory, since every call plays the same few.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from hotdesk_contracts import streams

FALLBACK_LANGUAGE = "en"


class ObjectStorePromptSource:
    """Prompt audio from the object store, cached in memory, with language fallback.

    ``de/enter-pin`` that is not in the store is looked up as ``en/enter-pin``. The
    cache keeps found prompts until :meth:`invalidate` (call it after an update).
    """

    def __init__(self, js: JetStreamContext, *, fallback: str = FALLBACK_LANGUAGE) -> None:
        self.js = js
        self.fallback = fallback
        self._store: ObjectStore | None = None
        self._cache: dict[str, bytes] = {}

    async def _fetch(self, prompt_id: str) -> bytes | None:
        hit = self._cache.get(prompt_id)
        if hit is not None:
            return hit
        if self._store is None:
            try:
                self._store = await self.js.object_store(streams.PROMPTS.bucket)
            except BucketNotFoundError:
                return None  # not installed yet: the caller plays "file not found"
        try:
            result = await self._store.get(prompt_id)
        except NotFoundError:
            return None
        data = result.data
        if not data:
            return None
        self._cache[prompt_id] = data
        return data

    async def get(self, prompt_id: str) -> bytes | None:
        """The WAV bytes of ``prompt_id``, of its fallback-language twin, or ``None``."""
        data = await self._fetch(prompt_id)
        if data is not None:
            return data
        language, sep, name = prompt_id.partition("/")
        if sep and language != self.fallback:
            return await self._fetch(f"{self.fallback}/{name}")
        return None

    def invalidate(self) -> None:
        """Forget cached audio (after prompts were updated in the store)."""
        self._cache.clear()
