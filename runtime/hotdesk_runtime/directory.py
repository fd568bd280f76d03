"""Directory distribution and reload.

The process that loaded the config file (``hotdesk up``'s supervisor, or whoever runs
:class:`DirectoryOwner`) publishes the directory as JSON under one key of the
``hotdesk_directory`` KV bucket. Every service watches that key
(:func:`watch_directory`) and installs each new revision with
``ctx.set_directory(new)``.

A NATS message holds at most ``max_payload`` (1 MiB by default), and a directory of
about 1,400 desks and 2,800 users is that large. A directory whose JSON exceeds
:data:`INLINE_LIMIT` is therefore stored zlib-compressed in chunks under keys of its
own (``chunk.<id>.<n>``), written first, and the watched key holds a small manifest
naming them with the SHA-256 of the JSON. The chunks of the revision a publish
replaces stay (a reader may be fetching them); those of the one before it are purged.
A small directory stays plain JSON under the watched key, as before.

Reloads come from SIGHUP or from ``hotdesk reload``, a request on
``subjects.DIRECTORY_RELOAD``: the owner re-reads the file, validates it, and
publishes only a valid one; otherwise it replies with the problems and the running
directory stays. A desk removed from the directory while someone sits there must be
logged out (``LoggedOut(reason=desk_removed)``): the owner calls its
``on_desk_removed`` hook for each of :func:`removed_desks`. Removal is judged against
the directory *in the bucket* that a publish replaces (not the owner's own copy), so a
desk removed from the file while the owner was stopped, or by another owner, is still
logged out; the replace is a compare-and-set, so two owners never both judge against
the same old value.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import zlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hotdesk_contracts import streams, subjects
from hotdesk_contracts.directory import Config, Directory

from .config import Problem, Severity, check_file
from .context import ServiceContext

log = logging.getLogger("hotdesk.directory")

DIRECTORY_KEY = "current"
"""The one key of the directory bucket holding the current directory."""

OWNERS_QUEUE = "hotdesk-directory-owners"
"""Queue group of the processes answering reload requests."""

DeskRemovedHook = Callable[[str], Awaitable[None]]
"""Called with a desk's name after a reload removed it from the directory."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Directory)


INLINE_LIMIT = 256 * 1024
"""Directory JSON up to this size is stored as it is under :data:`DIRECTORY_KEY`."""

CHUNK_BYTES = 256 * 1024
"""Compressed bytes per chunk key (well under NATS' default 1 MiB message limit)."""

MANIFEST_PREFIX = b"hotdesk-directory-chunks/1\n"
"""What a chunk manifest under :data:`DIRECTORY_KEY` starts with (JSON starts ``{``)."""

CHUNK_READ_ATTEMPTS = 5
"""Tries to read a chunk that is not there yet (a replica behind the one that
delivered the manifest) before the revision counts as unreadable."""


class ChunkManifest(msgspec.Struct, frozen=True, kw_only=True):
    """Where a large directory's compressed JSON lies, and how to check it."""

    id: str
    chunks: int
    size: int
    """Bytes of the directory's JSON."""
    sha256: str
    """Of the directory's JSON."""
    previous_id: str = ""
    """The chunked revision this one replaced (its chunks are kept until the next)."""
    previous_chunks: int = 0


class DirectoryUnreadable(ValueError):
    """A stored directory revision whose chunks are missing, damaged or not its own."""


def encode_directory(directory: Directory) -> bytes:
    """The directory as the JSON stored in the bucket."""
    return _encoder.encode(directory)


def decode_directory(data: bytes) -> Directory:
    """A directory from the bucket's JSON (raises ``msgspec.ValidationError``)."""
    return _decoder.decode(data)


def _chunk_key(chunk_id: str, index: int) -> str:
    return f"chunk.{chunk_id}.{index}"


def _manifest_of(value: bytes | None) -> ChunkManifest | None:
    if not value or not value.startswith(MANIFEST_PREFIX):
        return None
    try:
        return msgspec.json.decode(value[len(MANIFEST_PREFIX) :], type=ChunkManifest)
    except msgspec.ValidationError as exc:
        raise DirectoryUnreadable(f"directory chunk manifest not understood: {exc}") from exc


async def _stored_form(
    kv: KeyValue, directory: Directory, replaced: bytes | None
) -> tuple[bytes, list[str]]:
    """The value for :data:`DIRECTORY_KEY` (chunks written first when it is large) and
    the chunk keys to purge once that value is stored."""
    data = encode_directory(directory)
    old = _manifest_of(replaced)
    if len(data) <= INLINE_LIMIT:
        # Nothing chunked follows: both generations of chunks can go.
        stale = [] if old is None else _chunk_keys(old.id, old.chunks)
        if old is not None:
            stale += _chunk_keys(old.previous_id, old.previous_chunks)
        return data, stale
    packed = zlib.compress(data, 6)
    chunk_id = secrets.token_hex(8)
    parts = [packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES)]
    for index, part in enumerate(parts):
        await kv.put(_chunk_key(chunk_id, index), part)
    manifest = ChunkManifest(
        id=chunk_id,
        chunks=len(parts),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        previous_id=old.id if old is not None else "",
        previous_chunks=old.chunks if old is not None else 0,
    )
    stale = [] if old is None else _chunk_keys(old.previous_id, old.previous_chunks)
    return MANIFEST_PREFIX + msgspec.json.encode(manifest), stale


def _chunk_keys(chunk_id: str, count: int) -> list[str]:
    return [_chunk_key(chunk_id, index) for index in range(count)] if chunk_id else []


async def _purge(kv: KeyValue, keys: list[str]) -> None:
    for key in keys:
        with contextlib.suppress(Exception):
            await kv.purge(key)


async def _discard_written(kv: KeyValue, value: bytes) -> None:
    """Purge the chunks of a value that was not stored after all."""
    manifest = _manifest_of(value)
    if manifest is not None:
        await _purge(kv, _chunk_keys(manifest.id, manifest.chunks))


async def read_directory_value(kv: KeyValue, value: bytes) -> Directory:
    """The directory a :data:`DIRECTORY_KEY` value stands for: the JSON itself, or the
    chunks its manifest names. Raises ``msgspec.ValidationError`` for a directory that
    does not decode and :class:`DirectoryUnreadable` for chunks that are not right."""
    manifest = _manifest_of(value)
    if manifest is None:
        return decode_directory(value)
    parts = []
    for index in range(manifest.chunks):
        key = _chunk_key(manifest.id, index)
        for attempt in range(CHUNK_READ_ATTEMPTS):
            try:
                entry = await kv.get(key)
                break
            except KeyNotFoundError:
                if attempt + 1 == CHUNK_READ_ATTEMPTS:
                    raise DirectoryUnreadable(f"directory chunk {key} is missing") from None
                await asyncio.sleep(0.1 * 2**attempt)
        parts.append(entry.value or b"")
    try:
        data = zlib.decompress(b"".join(parts))
    except zlib.error as exc:
        raise DirectoryUnreadable(f"directory chunks of {manifest.id} are damaged") from exc
    if len(data) != manifest.size or hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise DirectoryUnreadable(f"directory chunks of {manifest.id} do not match their manifest")
    return decode_directory(data)


def removed_desks(old: Directory, new: Directory) -> list[str]:
    """Names of desks in ``old`` that ``new`` no longer has, in ``old``'s order."""
    kept = {desk.name for desk in new.desks}
    return [desk.name for desk in old.desks if desk.name not in kept]


async def directory_bucket(js: JetStreamContext) -> KeyValue:
    return await js.key_value(streams.DIRECTORY.bucket)


async def publish_directory(js: JetStreamContext, directory: Directory) -> int:
    """Store ``directory`` as the current one; returns the KV revision."""
    kv = await directory_bucket(js)
    try:
        replaced = (await kv.get(DIRECTORY_KEY)).value
    except KeyNotFoundError:
        replaced = None
    value, stale = await _stored_form(kv, directory, replaced)
    revision = int(await kv.put(DIRECTORY_KEY, value))
    await _purge(kv, stale)
    log.info(
        "directory published",
        extra={
            "revision": revision,
            "extensions": len(directory.extensions),
            "desks": len(directory.desks),
        },
    )
    return revision


class DirectoryConflict(RuntimeError):
    """The directory in the bucket kept changing under a compare-and-set publish."""


async def replace_directory(
    js: JetStreamContext, directory: Directory, attempts: int = 10
) -> tuple[int, Directory | None]:
    """Store ``directory`` in place of the current one; returns (revision, replaced).

    ``replaced`` is the directory the bucket held (``None`` if there was none). The
    write carries the revision read, so a concurrent publish makes it retry against
    the newer value instead of both owners diffing against the same old directory.
    """
    kv = await directory_bucket(js)
    for _ in range(attempts):
        try:
            entry = await kv.get(DIRECTORY_KEY)
        except KeyNotFoundError:
            entry = None
        try:
            data, stale = await _stored_form(kv, directory, entry.value if entry else None)
        except DirectoryUnreadable:
            data, stale = await _stored_form(kv, directory, None)
        try:
            if entry is None:
                revision = int(await kv.create(DIRECTORY_KEY, data))
            else:
                revision = int(await kv.update(DIRECTORY_KEY, data, last=entry.revision))
        except KeyWrongLastSequenceError:
            await _discard_written(kv, data)
            continue  # another owner published in between: diff against its value
        old: Directory | None = None
        if entry is not None and entry.value:
            try:
                old = await read_directory_value(kv, entry.value)
            except (msgspec.ValidationError, DirectoryUnreadable):
                log.warning("the replaced directory revision was not understood")
        await _purge(kv, stale)
        log.info(
            "directory published",
            extra={
                "revision": revision,
                "extensions": len(directory.extensions),
                "desks": len(directory.desks),
            },
        )
        return revision, old
    raise DirectoryConflict(f"the directory changed under {attempts} publishes in a row")


async def load_directory(js: JetStreamContext) -> Directory | None:
    """The current directory from the bucket, or ``None`` if none was published."""
    kv = await directory_bucket(js)
    for attempt in range(3):
        try:
            entry = await kv.get(DIRECTORY_KEY)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            return await read_directory_value(kv, entry.value)
        except DirectoryUnreadable:
            if attempt == 2:
                raise
            # Its chunks went with two publishes since we read it: read the new one.
    raise AssertionError("unreachable")


async def watch_directory(
    ctx: ServiceContext, poll: float = 1.0, on_watching: Callable[[], None] | None = None
) -> None:
    """Install every directory revision into ``ctx`` until ``ctx.stopping`` is set.

    The current value arrives first, so a service started after the last reload still
    gets it. A value that does not decode is logged and skipped (the running directory
    stays) rather than stopping the service. ``on_watching`` is called once the watch
    is established. Errors reaching NATS propagate: :class:`DirectoryWatch` restarts.
    """
    kv = await directory_bucket(ctx.js)
    watcher = await kv.watch(DIRECTORY_KEY)
    if on_watching is not None:
        on_watching()
    try:
        while not ctx.stopping.is_set():
            try:
                entry = await watcher.updates(timeout=poll)  # type: ignore[no-untyped-call]
            except TimeoutError:
                continue
            if entry is None or not entry.value:
                continue  # end of the initial values, or a delete marker
            try:
                new = await read_directory_value(kv, entry.value)
            except (msgspec.ValidationError, DirectoryUnreadable) as exc:
                log.error(
                    "directory revision not understood, keeping the current one",
                    extra={"revision": entry.revision, "error": str(exc)},
                )
                continue
            if new != ctx.directory:
                await ctx.set_directory(new)
                log.info("directory installed", extra={"revision": entry.revision})
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]


class DirectoryWatch:
    """Keeps :func:`watch_directory` running: restarted with backoff when it fails.

    ``watching`` is true only while a watch is established, so readiness can report a
    service that no longer receives directory reloads.
    """

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        poll: float = 1.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.ctx = ctx
        self.poll = poll
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.watching = False
        self.failures = 0
        """Watches that ended in an error since the process started."""

    def _established(self) -> None:
        self.watching = True

    async def run(self) -> None:
        """Watch until ``ctx.stopping`` is set, restarting after every failure."""
        delay = self.backoff_initial
        while not self.ctx.stopping.is_set():
            try:
                await watch_directory(self.ctx, self.poll, on_watching=self._established)
            except Exception as exc:
                was_watching, self.watching = self.watching, False
                self.failures += 1
                if was_watching:
                    delay = self.backoff_initial
                log.error(
                    "directory watch failed; restarting",
                    extra={"error": str(exc), "retry_in_seconds": delay},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ctx.stopping.wait(), delay)
                delay = min(delay * 2, self.backoff_max)
            else:
                self.watching = False
        self.watching = False


# --- reload ---------------------------------------------------------------------------
class ProblemInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A :class:`~hotdesk_runtime.config.Problem` on the wire."""

    key: str
    message: str
    severity: str = "error"
    line: int | None = None
    variable: str | None = None

    @classmethod
    def of(cls, problem: Problem) -> ProblemInfo:
        return cls(
            key=problem.key,
            message=problem.message,
            severity=problem.severity,
            line=problem.line,
            variable=problem.variable,
        )

    def problem(self) -> Problem:
        severity: Severity = "warning" if self.severity == "warning" else "error"
        return Problem(self.key, self.message, self.line, self.variable, severity)


class ReloadReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a reload request."""

    ok: bool
    revision: int = 0
    """The directory bucket revision published (0 when nothing was published)."""
    problems: list[ProblemInfo] = []
    removed_desks: list[str] = []
    error: str = ""
    """Why the reload could not even be tried (e.g. no config file)."""


class DirectoryOwner:
    """The process that owns the config file: publishes the directory, answers reloads."""

    def __init__(
        self,
        js: JetStreamContext,
        nc: Client,
        config: Config,
        path: Path | None,
        *,
        env: Mapping[str, str] | None = None,
        on_desk_removed: DeskRemovedHook | None = None,
    ) -> None:
        self.js = js
        self.nc = nc
        self.config = config
        self.path = path
        self.env = env
        self.on_desk_removed = on_desk_removed
        self._lock = asyncio.Lock()
        self._sub: Subscription | None = None

    async def publish(self) -> int:
        """Publish the config's directory (at start); log out desks it no longer has.

        Compared with the directory in the bucket, so a desk removed from the file while
        nothing ran is logged out at the next start.
        """
        revision, _gone = await self._publish(self.config.directory())
        return revision

    async def _publish(self, directory: Directory) -> tuple[int, list[str]]:
        revision, old = await replace_directory(self.js, directory)
        gone = removed_desks(old, directory) if old is not None else []
        for desk in gone:
            await self._desk_removed(desk)
        return revision, gone

    async def reload(self) -> ReloadReply:
        """Re-read and validate the file; publish only a valid directory."""
        async with self._lock:
            if self.path is None:
                return ReloadReply(
                    ok=False, error="running the demo directory: there is no file to reload"
                )
            config, problems = await asyncio.to_thread(check_file, self.path, self.env)
            infos = [ProblemInfo.of(p) for p in problems]
            if config is None or any(p.severity == "error" for p in problems):
                log.warning(
                    "reload refused: the config file has errors",
                    extra={"errors": sum(p.severity == "error" for p in problems)},
                )
                return ReloadReply(ok=False, problems=infos)
            self.config = config
            revision, gone = await self._publish(config.directory())
            return ReloadReply(ok=True, revision=revision, problems=infos, removed_desks=gone)

    async def _desk_removed(self, desk: str) -> None:
        if self.on_desk_removed is None:
            log.warning("desk removed but no logout hook is installed", extra={"desk": desk})
            return
        try:
            await self.on_desk_removed(desk)
        except Exception:
            # One failing logout must not stop the others; the reload itself succeeded.
            log.exception("logging out a removed desk failed", extra={"desk": desk})

    async def serve_reload_requests(self, queue: str = OWNERS_QUEUE) -> None:
        """Answer ``hotdesk reload`` requests on :data:`subjects.DIRECTORY_RELOAD`.

        Owners share a queue group, so with several replicas owning the same file each
        request is handled (and each removed desk logged out) by exactly one of them.
        """

        async def handle(msg: Msg) -> None:
            reply = await self.reload()
            if msg.reply:
                await msg.respond(msgspec.json.encode(reply))

        self._sub = await self.nc.subscribe(subjects.DIRECTORY_RELOAD, queue=queue, cb=handle)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


async def request_reload(nc: Client, timeout: float = 10.0) -> ReloadReply:
    """Ask the config owner to reload (what ``hotdesk reload`` does)."""
    msg = await nc.request(subjects.DIRECTORY_RELOAD, b"", timeout=timeout)
    return msgspec.json.decode(msg.data, type=ReloadReply)
