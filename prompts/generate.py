"""Generate a prompt set's audio from its manifest: text → espeak-ng → sox → WAV.

Usage: ``python prompts/generate.py [LANGUAGE ...]`` (default: every set here).

Each prompt becomes ``<language>/<id>.wav``: 8 kHz, mono, 16-bit signed linear PCM,
the format the edge encodes to G.711 at play time. The English ``file-not-found``
prompt is also copied next to the edge's media code, where the edge plays it when a
prompt is missing from the prompt store. Needs the ``espeak-ng`` and ``sox`` programs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILTIN_FILE_NOT_FOUND = (
    HERE.parent / "services" / "sip-edge" / "hotdesk_sip_edge" / "media" / "file-not-found.wav"
)


def generate_set(set_dir: Path) -> int:
    """Render every prompt of ``set_dir/manifest.toml``; returns how many."""
    manifest = tomllib.loads((set_dir / "manifest.toml").read_text(encoding="utf-8"))
    voice = manifest["set"]["voice"]
    speed = str(manifest["set"].get("speed", 150))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        for prompt in manifest["prompt"]:
            out = set_dir / f"{prompt['id']}.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", speed, "-w", str(raw), prompt["text"]],
                check=True,
            )
            # 8 kHz mono 16-bit; -D (no dither) keeps the output byte-identical across runs.
            subprocess.run(
                [
                    "sox",
                    "-D",
                    "-G",
                    str(raw),
                    "-r",
                    "8000",
                    "-c",
                    "1",
                    "-b",
                    "16",
                    "-e",
                    "signed-integer",
                    str(out),
                ],
                check=True,
            )
    if set_dir.name == "en":
        shutil.copyfile(set_dir / "file-not-found.wav", BUILTIN_FILE_NOT_FOUND)
    return len(manifest["prompt"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("languages", nargs="*", help="sets to generate (default: all)")
    args = parser.parse_args(argv)
    languages = args.languages or sorted(p.parent.name for p in HERE.glob("*/manifest.toml"))
    for language in languages:
        count = generate_set(HERE / language)
        print(f"{language}: {count} prompts")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
