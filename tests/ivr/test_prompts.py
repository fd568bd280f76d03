"""Prompt sets in a real NATS object store: install on first start, status, update."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta

from hotdesk_ivr import prompts
from hotdesk_sip_edge.media import wav


def make_set(root: Path, name: str, entries: dict[str, int]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    lines = ['[set]\nlanguage = "x"\nvoice = "en"\n']
    for prompt, version in entries.items():
        lines.append(f'[[prompt]]\nid = "{prompt}"\ntext = "{prompt}"\nversion = {version}\n')
        (folder / f"{prompt}.wav").write_bytes(f"RIFF-{prompt}-{version}".encode())
    (folder / "manifest.toml").write_text("\n".join(lines))


def test_the_bundled_english_set_has_every_prompt_the_flows_play() -> None:
    ids = {p.prompt_id for p in prompts.bundled()}
    needed = {
        "enter-pin",
        "pin-wrong",
        "locked-out",
        "unknown-extension",
        "login-not-allowed",
        "logged-in",
        "logged-out",
        "desk-not-in-use",
        "logged-in-elsewhere",
        "press-1-to-move",
        "desk-busy",
        "goodbye",
        "error",
        "file-not-found",
        "letter-h",
        "letter-d",
        *(f"digit-{d}" for d in range(10)),
    }
    assert {f"en/{n}" for n in needed} <= ids
    for p in prompts.bundled():
        assert p.version >= 1
        audio = wav.parse(p.path.read_bytes())  # 8 kHz mono, or this raises
        assert audio.encoding == wav.PCM16
        assert len(audio.data) > 1600


async def test_first_start_installs_the_bundled_set_and_status_is_all_ok(
    js: JetStreamContext,
) -> None:
    seen: list[tuple[int, int, str]] = []
    count = await prompts.install_bundled(js, progress=lambda d, t, p: seen.append((d, t, p)))
    bundled = prompts.bundled()
    assert count == len(bundled)
    assert [s[0] for s in seen] == list(range(1, count + 1))
    assert {s[1] for s in seen} == {count}
    rows = await prompts.status(js)
    assert {r.state for r in rows} == {prompts.OK}
    store = await prompts.open_store(js)
    enter_pin = next(p for p in bundled if p.prompt_id == "en/enter-pin")
    assert (await store.get("en/enter-pin")).data == enter_pin.path.read_bytes()
    assert await prompts.install_bundled(js) == 0  # a second start installs nothing


async def test_status_reports_missing_and_outdated_prompts_and_update_fixes_them(
    js: JetStreamContext, tmp_path: Path
) -> None:
    make_set(tmp_path, "en", {"a": 1, "b": 2, "c": 1})
    roots = [tmp_path]
    await prompts.install_bundled(js, roots=roots)
    store = await prompts.open_store(js)
    await store.delete("en/a")
    await store.put(
        "en/b", b"old", meta=ObjectMeta(name="en/b", headers={prompts.VERSION_HEADER: ["1"]})
    )
    rows = {r.prompt: r for r in await prompts.status(js, roots)}
    assert (rows["a"].state, rows["a"].installed_version) == (prompts.MISSING, None)
    assert (rows["b"].state, rows["b"].installed_version, rows["b"].bundled_version) == (
        prompts.OUTDATED,
        1,
        2,
    )
    assert rows["c"].state == prompts.OK
    # First start only fills gaps; it leaves an outdated prompt for the admin to update.
    assert await prompts.install_bundled(js, roots=roots) == 1
    assert (await store.get("en/b")).data == b"old"
    done: list[str] = []
    assert await prompts.update(js, lambda d, t, p: done.append(p), roots) == 1
    assert done == ["en/b"]
    assert {r.state for r in await prompts.status(js, roots)} == {prompts.OK}


def test_a_manifest_naming_a_missing_audio_file_is_refused(tmp_path: Path) -> None:
    make_set(tmp_path, "fr", {"a": 1})
    (tmp_path / "fr" / "a.wav").unlink()
    with pytest.raises(prompts.PromptSetError, match=r"no audio file a\.wav"):
        prompts.bundled([tmp_path])
