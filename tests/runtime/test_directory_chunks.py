"""A directory larger than one NATS message: stored compressed in chunks behind a
manifest, read back whole by loads, reloads and watches, old chunks purged."""

from __future__ import annotations

import asyncio
import secrets

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from hotdesk_contracts import streams
from hotdesk_contracts.directory import Desk, Directory, Extension
from hotdesk_runtime.directory import (
    DIRECTORY_KEY,
    INLINE_LIMIT,
    MANIFEST_PREFIX,
    ChunkManifest,
    encode_directory,
    load_directory,
    publish_directory,
    replace_directory,
    watch_directory,
)
from hotdesk_runtime.nats import ensure_jetstream
from tests.runtime.test_directory import service_context


def pin_hash() -> str:
    """The shape of an argon2id hash, with a random salt and digest as each real one has."""
    return f"$argon2id$v=19$m=65536,t=3,p=4${secrets.token_urlsafe(16)}${secrets.token_urlsafe(32)}"


def big_directory(desks: int, tag: str = "") -> Directory:
    """``desks`` desks and twice as many users, with random passwords and hashes as in
    real life (they do not compress): 2,500 desks make about 1.9 MB of JSON."""
    return Directory(
        desks=[
            Desk(
                name=f"HD{n:04d}",
                mac=f"0015{n:08x}",
                sip_password=secrets.token_urlsafe(16),
            )
            for n in range(1, desks + 1)
        ],
        extensions=[
            Extension(
                number=str(10000 + n),
                name=f"User {n}{tag}",
                sip_password=secrets.token_urlsafe(16),
                pin_hash=pin_hash(),
                blf=[str(10000 + (n + k) % (2 * desks)) for k in (1, 2, 3)],
            )
            for n in range(2 * desks)
        ],
    )


async def present(js: JetStreamContext, keys: list[str]) -> set[str]:
    """Which of ``keys`` hold a value in the directory bucket (one get each: a purged
    key reads as not found)."""
    kv = await js.key_value(streams.DIRECTORY.bucket)
    found = set()
    for key in keys:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue
        if entry.value:
            found.add(key)
    return found


def chunk_keys(stored: ChunkManifest) -> list[str]:
    return [f"chunk.{stored.id}.{n}" for n in range(stored.chunks)]


async def manifest(js: JetStreamContext) -> ChunkManifest:
    kv = await js.key_value(streams.DIRECTORY.bucket)
    value = (await kv.get(DIRECTORY_KEY)).value or b""
    assert value.startswith(MANIFEST_PREFIX)
    return msgspec.json.decode(value[len(MANIFEST_PREFIX) :], type=ChunkManifest)


async def test_a_directory_larger_than_a_nats_message_is_stored_in_chunks_and_read_back(
    js: JetStreamContext,
) -> None:
    await ensure_jetstream(js)
    directory = big_directory(2500)
    assert len(encode_directory(directory)) > 1024 * 1024  # over nats-server's max_payload
    await publish_directory(js, directory)
    stored = await manifest(js)
    assert stored.chunks >= 2
    assert await present(js, chunk_keys(stored)) == set(chunk_keys(stored))
    assert await load_directory(js) == directory


async def test_a_small_directory_stays_plain_json_and_the_chunks_before_it_go(
    js: JetStreamContext,
) -> None:
    await ensure_jetstream(js)
    await publish_directory(js, big_directory(2500))
    big = await manifest(js)
    small = Directory(desks=[Desk(name="HD0001", mac="001565000001", sip_password="x")])
    assert len(encode_directory(small)) <= INLINE_LIMIT
    await publish_directory(js, small)
    kv = await js.key_value(streams.DIRECTORY.bucket)
    assert (await kv.get(DIRECTORY_KEY)).value == encode_directory(small)
    assert await present(js, chunk_keys(big)) == set()
    assert await load_directory(js) == small


async def test_reloads_keep_the_replaced_chunks_and_purge_the_ones_before(
    js: JetStreamContext,
) -> None:
    await ensure_jetstream(js)
    first, second, third = (big_directory(2000, tag) for tag in "abc")
    await replace_directory(js, first)
    one = await manifest(js)
    _, replaced = await replace_directory(js, second)
    assert replaced == first  # removed desks are judged against the chunked value
    two = await manifest(js)
    assert two.previous_id == one.id
    _, replaced = await replace_directory(js, third)
    assert replaced == second
    three = await manifest(js)
    assert await present(js, chunk_keys(one)) == set()
    assert await present(js, chunk_keys(two)) == set(chunk_keys(two))  # a reader may need them
    assert await present(js, chunk_keys(three)) == set(chunk_keys(three))
    assert await load_directory(js) == third


async def test_a_service_installs_a_chunked_directory_and_skips_damaged_chunks(
    nc: Client, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    await ensure_jetstream(js)
    ctx = service_context(nc, js)
    seen: asyncio.Queue[Directory] = asyncio.Queue()

    async def listener(_old: Directory, new: Directory) -> None:
        await seen.put(new)

    ctx.on_directory_change(listener)
    watcher = asyncio.create_task(watch_directory(ctx, poll=0.2))
    try:
        big = big_directory(2000)
        await publish_directory(js, big)
        assert await asyncio.wait_for(seen.get(), 30) == big

        # A manifest whose chunk does not hold what it says: logged, the directory stays.
        damaged = big_directory(2000, "x")
        await publish_directory(js, damaged)
        assert await asyncio.wait_for(seen.get(), 30) == damaged
        stored = await manifest(js)
        kv = await js.key_value(streams.DIRECTORY.bucket)
        await kv.put(f"chunk.{stored.id}.0", b"not what the manifest hashed")
        value = (await kv.get(DIRECTORY_KEY)).value
        assert value is not None
        await kv.put(DIRECTORY_KEY, value)  # the same manifest again, now damaged
        small = Directory(desks=[Desk(name="HD0009", mac="001565000009", sip_password="x")])
        await publish_directory(js, small)
        assert await asyncio.wait_for(seen.get(), 30) == small
        assert any(
            r.getMessage() == "directory revision not understood, keeping the current one"
            for r in caplog.records
        )
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(watcher, 10)
