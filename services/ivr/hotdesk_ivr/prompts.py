"""Prompt sets in the NATS object store.

A prompt id is ``<set>/<prompt>`` (``en/enter-pin``); a set is named by its language.
Each object is the prompt's WAV file (8 kHz mono 16-bit) and carries the version of the
manifest entry it was made from in the ``Hotdesk-Prompt-Version`` header, so
:func:`status` can tell a prompt that is missing or older than the bundled one.

The bundled sets live in the repository's ``prompts/`` folder: one folder per set with a
``manifest.toml`` (id, text, version per prompt) and the generated WAVs. The edge reads
prompts from the same bucket (``hotdesk_sip_edge.media.prompt_store``); services share
the bucket, not code.
"""

from __future__ import annotations

import logging
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectStoreConfig
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from hotdesk_contracts import streams

log = logging.getLogger(__name__)


def _bundled_dir() -> Path:
    # An installed image carries the sets under <prefix>/share/prompts; a checkout of
    # the repository has them at its top.
    installed = Path(sys.prefix) / "share" / "prompts"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[3] / "prompts"


BUNDLED_DIR = _bundled_dir()
"""The prompt sets shipped with hotdesk."""
VERSION_HEADER = "Hotdesk-Prompt-Version"

OK = "ok"
MISSING = "missing"
OUTDATED = "outdated"

Progress = Callable[[int, int, str], None]
"""``progress(done, total, prompt_id)``, called after each prompt is stored."""


class PromptSetError(ValueError):
    """A bundled prompt set whose manifest or audio is broken."""


@dataclass(frozen=True)
class BundledPrompt:
    set: str
    prompt: str
    version: int
    text: str
    path: Path

    @property
    def prompt_id(self) -> str:
        return f"{self.set}/{self.prompt}"


@dataclass(frozen=True)
class PromptStatus:
    """One row of ``hotdesk prompts status``."""

    set: str
    prompt: str
    installed_version: int | None
    bundled_version: int
    state: str
    """``ok``, ``missing`` or ``outdated``."""


def bundled(roots: Sequence[Path] = (BUNDLED_DIR,)) -> list[BundledPrompt]:
    """Every prompt of every set under ``roots``, sorted by prompt id."""
    found: dict[str, BundledPrompt] = {}
    for root in roots:
        for manifest_path in sorted(root.glob("*/manifest.toml")):
            set_dir = manifest_path.parent
            try:
                manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
                entries = manifest["prompt"]
                prompts = [
                    BundledPrompt(
                        set=set_dir.name,
                        prompt=str(e["id"]),
                        version=int(e["version"]),
                        text=str(e.get("text", "")),
                        path=set_dir / f"{e['id']}.wav",
                    )
                    for e in entries
                ]
            except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
                raise PromptSetError(f"{manifest_path}: {exc}") from exc
            for p in prompts:
                if not p.path.is_file():
                    raise PromptSetError(f"{manifest_path}: no audio file {p.path.name}")
                found[p.prompt_id] = p
    return [found[k] for k in sorted(found)]


async def open_store(js: JetStreamContext) -> ObjectStore:
    """The prompt bucket, created on first use."""
    try:
        return await js.object_store(streams.PROMPTS.bucket)
    except BucketNotFoundError:
        return await js.create_object_store(
            streams.PROMPTS.bucket,
            ObjectStoreConfig(description=streams.PROMPTS.description),
        )


async def installed_versions(store: ObjectStore) -> dict[str, int]:
    """Prompt id → installed version (0 when the object carries none)."""
    try:
        infos = await store.list(ignore_deletes=True)
    except NotFoundError:
        return {}
    out: dict[str, int] = {}
    for info in infos:
        if info.deleted:
            continue
        raw = (info.headers or {}).get(VERSION_HEADER) or ["0"]
        value = raw[0] if isinstance(raw, list) else raw
        out[info.name] = int(value) if str(value).isdigit() else 0
    return out


async def status(
    js: JetStreamContext, roots: Sequence[Path] = (BUNDLED_DIR,)
) -> list[PromptStatus]:
    """Each bundled prompt against what the store holds."""
    installed = await installed_versions(await open_store(js))
    rows = []
    for p in bundled(roots):
        have = installed.get(p.prompt_id)
        state = MISSING if have is None else OUTDATED if have < p.version else OK
        rows.append(PromptStatus(p.set, p.prompt, have, p.version, state))
    return rows


async def _install(
    js: JetStreamContext,
    progress: Progress | None,
    roots: Sequence[Path],
    wanted: Callable[[int | None, int], bool],
) -> int:
    store = await open_store(js)
    installed = await installed_versions(store)
    todo = [p for p in bundled(roots) if wanted(installed.get(p.prompt_id), p.version)]
    for done, p in enumerate(todo, start=1):
        await store.put(
            p.prompt_id,
            p.path.read_bytes(),
            meta=ObjectMeta(
                name=p.prompt_id,
                description=p.text,
                headers={VERSION_HEADER: [str(p.version)]},
            ),
        )
        if progress is not None:
            progress(done, len(todo), p.prompt_id)
    if todo:
        log.info("prompts installed", extra={"count": len(todo)})
    return len(todo)


async def install_bundled(
    js: JetStreamContext,
    progress: Progress | None = None,
    roots: Sequence[Path] = (BUNDLED_DIR,),
) -> int:
    """Store every bundled prompt the store lacks (first start); returns how many.

    Prompts already there are left alone, even if outdated: :func:`update` replaces
    those, when an admin asks for it.
    """
    return await _install(js, progress, roots, lambda have, _: have is None)


async def update(
    js: JetStreamContext,
    progress: Progress | None = None,
    roots: Sequence[Path] = (BUNDLED_DIR,),
) -> int:
    """Store every bundled prompt that is missing or outdated; returns how many."""
    return await _install(js, progress, roots, lambda have, want: have is None or have < want)
