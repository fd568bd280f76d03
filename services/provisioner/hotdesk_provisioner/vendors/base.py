"""What a vendor plugin is: data (templates, file names, the NOTIFY event) and a detector.

A plugin never does I/O: the detector reads a request path and a User-Agent, the
renderer turns a :class:`RenderContext` into file bytes. Templates live next to the
plugin as ``templates/<kind>.j2`` with optional per-model overrides in
``templates/models/<model>/<kind>.j2`` that extend the base and override its blocks
(the Wazo provisioning plugins are organised the same way).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2


class FileRole(enum.StrEnum):
    """Whether a requested file belongs to one phone or to every phone of a model."""

    DESK = "desk"
    """Named after the phone's MAC: only that desk may fetch it."""
    COMMON = "common"
    """Shared by a model (no MAC in the name): any desk of this vendor may fetch it."""


@dataclass(frozen=True, slots=True)
class Detection:
    """What a request tells about the phone that sent it.

    ``mac`` is lowercase hex without separators, ``None`` when neither the path nor the
    User-Agent carries it (a common file from a phone that does not send its MAC).
    """

    vendor: str
    model: str
    mac: str | None
    firmware: str
    filename: str
    role: FileRole


@dataclass(frozen=True, slots=True)
class Key:
    """One programmable key, numbered from 1 as the phone's documentation counts them."""

    index: int
    kind: str
    """``speed`` (dial ``number``) or ``blf`` (watch ``number``'s dialog state)."""
    number: str
    label: str


@dataclass(frozen=True, slots=True)
class SipServer:
    """Where the phone registers: the edge's advertised address."""

    host: str
    port: int
    transport: str
    """``udp``, ``tcp`` or ``tls``."""


@dataclass(frozen=True, slots=True)
class RenderContext:
    """Everything a template may use. Built by :func:`hotdesk_provisioner.render.render`."""

    desk: str
    mac: str
    """Lowercase hex; templates apply the vendor's casing through ``mac_upper``."""
    model: str
    user_name: str
    auth_name: str
    password: str
    display_name: str
    label: str
    server: SipServer
    keys: tuple[Key, ...]
    provisioning_url: str
    seated: str
    """The seated user's extension, empty for an idle desk."""
    files: dict[str, str] = field(default_factory=dict)
    """Every file name of this desk, by template kind (for master files that list others)."""

    def slots(self, count: int) -> list[tuple[int, Key | None]]:
        """Key positions 1..count with the key placed there, ``None`` for a free one.

        Templates write every slot, free ones cleared, so that a previous user's keys do
        not survive a logout on phones that keep settings absent from the file.
        """
        by_index = {key.index: key for key in self.keys}
        return [(n, by_index.get(n)) for n in range(1, count + 1)]


FileNames = Callable[[str, str], dict[str, str]]
"""(lowercase MAC, model) -> {file name as the phone requests it: template kind}."""
Detector = Callable[[str, str], "Detection | None"]


@dataclass(frozen=True)
class VendorPlugin:
    """One phone vendor: how to recognise its requests and what to serve it."""

    name: str
    notify_event: str
    """The ``Event`` header of the NOTIFY that makes this vendor's phones re-fetch."""
    user_agent: re.Pattern[str]
    """Must match the User-Agent; named groups ``model``, ``firmware``, optional ``mac``."""
    paths: tuple[tuple[re.Pattern[str], FileRole], ...]
    """File-name patterns (full match, case-sensitive: casing is part of the rule); an
    optional ``mac`` group, an optional ``model`` group."""
    file_names: FileNames
    template_dir: Path
    autoescape: bool
    _env: jinja2.Environment = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.template_dir),
            undefined=jinja2.StrictUndefined,
            # XML formats escape; key = value files are not markup (values are made
            # single-line by the renderer instead).
            autoescape=self.autoescape,  # noqa: S701
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        object.__setattr__(self, "_env", env)

    def detect(self, path: str, user_agent: str) -> Detection | None:
        """The phone behind a request for ``path``, or ``None`` if not this vendor's."""
        agent = self.user_agent.search(user_agent)
        if agent is None:
            return None
        filename = path.rsplit("/", 1)[-1]
        for pattern, role in self.paths:
            found = pattern.fullmatch(filename)
            if found is None:
                continue
            groups = found.groupdict()
            mac = groups.get("mac") or agent.groupdict().get("mac")
            return Detection(
                vendor=self.name,
                model=agent.group("model"),
                mac=_normal_mac(mac) if mac else None,
                firmware=agent.group("firmware"),
                filename=filename,
                role=role,
            )
        return None

    def render_file(self, kind: str, context: RenderContext) -> bytes:
        """Render one template kind, preferring the model's override."""
        template = self._env.select_template([f"models/{context.model}/{kind}.j2", f"{kind}.j2"])
        variables: dict[str, Any] = {
            "c": context,
            "mac_upper": context.mac.upper(),
        }
        return template.render(variables).encode("utf-8")


def _normal_mac(mac: str) -> str:
    return mac.replace(":", "").replace("-", "").lower()
