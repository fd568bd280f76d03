"""docs/configuration.md documents every key of the schema, and is current."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hotdesk_contracts.directory import Config
from hotdesk_runtime.config_reference import render_reference, splice

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def all_keys(info: msgspec.inspect.Type, prefix: str = "") -> list[str]:
    keys: list[str] = []
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        key = f"{prefix}{field.name}"
        keys.append(key)
        kind = field.type
        if isinstance(kind, msgspec.inspect.StructType):
            keys += all_keys(kind, f"{key}.")
        elif isinstance(kind, msgspec.inspect.ListType) and isinstance(
            kind.item_type, msgspec.inspect.StructType
        ):
            keys += all_keys(kind.item_type, f"{key}[].")
    return keys


def test_every_key_has_a_row_with_a_meaning() -> None:
    reference = render_reference()
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in reference.splitlines()
        if line.startswith("| `")
    }
    for key in all_keys(msgspec.inspect.type_info(Config)):
        assert key in rows, key
        assert not rows[key].rstrip().endswith("|  |"), f"{key} has no meaning"


def test_the_documentation_embeds_the_current_reference() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert splice(text) == text, "run the splice in hotdesk_runtime.config_reference"
