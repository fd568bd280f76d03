"""Directory distribution through the KV bucket and validated reloads, on a real server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts.directory import Config, Desk, Directory
from hotdesk_runtime.config import load_config
from hotdesk_runtime.context import ServiceContext
from hotdesk_runtime.directory import (
    DirectoryOwner,
    DirectoryWatch,
    decode_directory,
    encode_directory,
    load_directory,
    publish_directory,
    removed_desks,
    request_reload,
    watch_directory,
)
from hotdesk_runtime.nats import ensure_jetstream

DESKS = """\
[[desks]]
name = "HD0001"
mac = "001565aabbcc"
sip_password = "s1"

[[desks]]
name = "HD0002"
mac = "001565aabbcd"
sip_password = "s2"

[[trunks]]
name = "emergency"
uri = "sip:127.0.0.1:5099"
emergency = true
"""


def desk(name: str, mac: str) -> Desk:
    return Desk(name=name, mac=mac, sip_password="x")


def test_removed_desks_lists_desks_gone_from_the_new_directory() -> None:
    old = Directory(desks=[desk("HD0001", "0" * 12), desk("HD0002", "1" * 12)])
    new = Directory(desks=[desk("HD0002", "1" * 12), desk("HD0003", "2" * 12)])
    assert removed_desks(old, new) == ["HD0001"]
    assert removed_desks(new, new) == []


def test_directory_json_round_trips() -> None:
    directory = Directory(desks=[desk("HD0001", "0" * 12)])
    assert decode_directory(encode_directory(directory)) == directory


async def test_published_directory_is_read_back(js: JetStreamContext) -> None:
    await ensure_jetstream(js)
    directory = Directory(desks=[desk("HD0001", "0" * 12)])
    revision = await publish_directory(js, directory)
    assert revision > 0
    assert await load_directory(js) == directory


async def test_services_install_each_published_revision(nc: Client, js: JetStreamContext) -> None:
    await ensure_jetstream(js)
    ctx = ServiceContext(
        name="ivr",
        instance_id="test",
        config=Config(),
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("test"),
    )
    seen: asyncio.Queue[Directory] = asyncio.Queue()

    async def listener(_old: Directory, new: Directory) -> None:
        await seen.put(new)

    ctx.on_directory_change(listener)
    watcher = asyncio.create_task(watch_directory(ctx, poll=0.2))
    first = Directory(desks=[desk("HD0001", "0" * 12)])
    second = Directory(desks=[desk("HD0002", "1" * 12)])
    await publish_directory(js, first)
    assert await asyncio.wait_for(seen.get(), 10) == first
    await publish_directory(js, second)
    assert await asyncio.wait_for(seen.get(), 10) == second
    assert ctx.directory == second
    ctx.stopping.set()
    await asyncio.wait_for(watcher, 10)


def service_context(nc: Client, js: JetStreamContext) -> ServiceContext:
    return ServiceContext(
        name="ivr",
        instance_id="test",
        config=Config(),
        config_path=None,
        nc=nc,
        js=js,
        log=logging.getLogger("test"),
    )


async def test_a_failing_listener_stops_neither_the_others_nor_later_reloads(
    nc: Client, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    await ensure_jetstream(js)
    ctx = service_context(nc, js)
    seen: asyncio.Queue[Directory] = asyncio.Queue()

    async def broken(_old: Directory, _new: Directory) -> None:
        raise RuntimeError("listener bug")

    async def listener(_old: Directory, new: Directory) -> None:
        await seen.put(new)

    ctx.on_directory_change(broken)
    ctx.on_directory_change(listener)
    watcher = asyncio.create_task(watch_directory(ctx, poll=0.2))
    first = Directory(desks=[desk("HD0001", "0" * 12)])
    second = Directory(desks=[desk("HD0002", "1" * 12)])
    await publish_directory(js, first)
    assert await asyncio.wait_for(seen.get(), 10) == first
    await publish_directory(js, second)
    assert await asyncio.wait_for(seen.get(), 10) == second
    assert not watcher.done()
    assert "listener bug" in caplog.text
    ctx.stopping.set()
    await asyncio.wait_for(watcher, 10)


async def test_a_failed_directory_watch_is_restarted_and_not_watching_meanwhile(
    nc: Client, js: JetStreamContext
) -> None:
    # No bucket yet: every watch attempt fails until it exists.
    ctx = service_context(nc, js)
    watch = DirectoryWatch(ctx, poll=0.2, backoff_initial=0.05, backoff_max=0.2)
    task = asyncio.create_task(watch.run())
    for _ in range(200):
        if watch.failures >= 2:
            break
        await asyncio.sleep(0.05)
    assert watch.failures >= 2
    assert not watch.watching
    assert not task.done()

    await ensure_jetstream(js)
    for _ in range(200):
        if watch.watching:
            break
        await asyncio.sleep(0.05)
    assert watch.watching
    directory = Directory(desks=[desk("HD0009", "9" * 12)])
    await publish_directory(js, directory)
    for _ in range(200):
        if ctx.directory == directory:
            break
        await asyncio.sleep(0.05)
    assert ctx.directory == directory
    ctx.stopping.set()
    await asyncio.wait_for(task, 10)
    assert not watch.watching


async def test_reload_publishes_a_valid_file_and_reports_removed_desks(
    tmp_path: Path, nc: Client, js: JetStreamContext
) -> None:
    await ensure_jetstream(js)
    path = tmp_path / "hotdesk.toml"
    path.write_text(DESKS, encoding="utf-8")
    removed: list[str] = []

    async def on_removed(name: str) -> None:
        removed.append(name)

    owner = DirectoryOwner(
        js, nc, load_config(path, env={}).config, path, env={}, on_desk_removed=on_removed
    )
    await owner.publish()
    await owner.serve_reload_requests()
    second_desk = DESKS.index("[[desks]]", 1)
    path.write_text(DESKS[:second_desk] + DESKS[DESKS.index("[[trunks]]") :], encoding="utf-8")

    reply = await request_reload(nc)

    assert reply.ok
    assert reply.removed_desks == ["HD0002"]
    assert removed == ["HD0002"]
    published = await load_directory(js)
    assert published is not None
    assert [d.name for d in published.desks] == ["HD0001"]
    await owner.stop()


async def test_a_desk_removed_while_no_owner_ran_is_reported_at_the_next_start(
    tmp_path: Path, nc: Client, js: JetStreamContext
) -> None:
    await ensure_jetstream(js)
    path = tmp_path / "hotdesk.toml"
    path.write_text(DESKS, encoding="utf-8")
    removed: list[str] = []

    async def on_removed(name: str) -> None:
        removed.append(name)

    before = DirectoryOwner(js, nc, load_config(path, env={}).config, path, env={})
    await before.publish()
    second_desk = DESKS.index("[[desks]]", 1)
    path.write_text(DESKS[:second_desk] + DESKS[DESKS.index("[[trunks]]") :], encoding="utf-8")

    # A restart: a new owner that never saw HD0002 in its own copy.
    after = DirectoryOwner(
        js, nc, load_config(path, env={}).config, path, env={}, on_desk_removed=on_removed
    )
    await after.publish()

    assert removed == ["HD0002"]


async def test_with_two_owners_removal_is_judged_against_the_published_directory(
    tmp_path: Path, nc: Client, js: JetStreamContext
) -> None:
    await ensure_jetstream(js)
    path = tmp_path / "hotdesk.toml"
    path.write_text(DESKS, encoding="utf-8")
    removed: list[str] = []

    async def on_removed(name: str) -> None:
        removed.append(name)

    config = load_config(path, env={}).config
    first = DirectoryOwner(js, nc, config, path, env={}, on_desk_removed=on_removed)
    second = DirectoryOwner(js, nc, config, path, env={}, on_desk_removed=on_removed)
    await first.publish()
    await second.publish()
    third = '[[desks]]\nname = "HD0003"\nmac = "001565aabbce"\nsip_password = "s3"\n\n'
    trunks = DESKS.index("[[trunks]]")
    path.write_text(DESKS[:trunks] + third + DESKS[trunks:], encoding="utf-8")
    assert (await first.reload()).ok

    # The second owner's own copy never had HD0003; the bucket did.
    path.write_text(DESKS, encoding="utf-8")
    reply = await second.reload()

    assert reply.removed_desks == ["HD0003"]
    assert removed == ["HD0003"]


async def test_reload_of_a_bad_file_replies_with_problems_and_publishes_nothing(
    tmp_path: Path, nc: Client, js: JetStreamContext
) -> None:
    await ensure_jetstream(js)
    path = tmp_path / "hotdesk.toml"
    path.write_text(DESKS, encoding="utf-8")
    owner = DirectoryOwner(js, nc, load_config(path, env={}).config, path, env={})
    await owner.publish()
    await owner.serve_reload_requests()
    before = await load_directory(js)
    path.write_text(DESKS.replace('mac = "001565aabbcd"', 'mac = "nope"'), encoding="utf-8")

    reply = await request_reload(nc)

    assert not reply.ok
    [problem] = reply.problems
    assert (problem.key, problem.line) == ("desks[1].mac", 8)
    assert problem.message == "expected 12 hex digits, no separators"
    assert await load_directory(js) == before
    await owner.stop()


async def test_reload_without_a_file_says_so(nc: Client, js: JetStreamContext) -> None:
    await ensure_jetstream(js)
    owner = DirectoryOwner(js, nc, Config(), None)
    reply = await owner.reload()
    assert not reply.ok
    assert "no file to reload" in reply.error
    assert msgspec.json.decode(msgspec.json.encode(reply)) is not None
