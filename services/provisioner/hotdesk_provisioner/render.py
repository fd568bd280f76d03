"""Rendering a desk's phone files: pure, from the directory and who sits at the desk.

An idle desk shows its own name and has one key: logout. A seated user's extension and
name go on the screen and the user's BLF keys follow the logout key, shifted down by one.
The SIP account is always the desk's own: a desk phone never receives a user's password.
"""

from __future__ import annotations

import hashlib
import re

from hotdesk_contracts.directory import Desk, Directory, Extension, SipSettings

from .vendors import Key, RenderContext, SipServer, plugin

LOGOUT_LABEL = "Logout"

Files = dict[str, bytes]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RenderError(ValueError):
    """A desk that cannot be rendered (no vendor known yet, say)."""


def one_line(text: str) -> str:
    """Text safe for one line of a ``key = value`` file: no control characters."""
    return " ".join(_CONTROL.sub(" ", text).split())


def sip_server(sip: SipSettings) -> SipServer:
    """Where phones register: TLS on the TLS port when the edge has a certificate."""
    if sip.tls_cert:
        return SipServer(host=sip.advertised_host, port=sip.tls_port, transport="tls")
    return SipServer(host=sip.advertised_host, port=sip.port, transport="udp")


def desk_keys(directory: Directory, seated: Extension | None) -> tuple[Key, ...]:
    """Key 1 = logout; then the seated user's BLF keys, each one position further down."""
    keys = [Key(index=1, kind="speed", number=directory.dial_codes.logout, label=LOGOUT_LABEL)]
    if seated is not None:
        for offset, number in enumerate(seated.blf):
            watched = directory.extension(number)
            label = one_line(watched.name) if watched is not None and watched.name else number
            keys.append(Key(index=offset + 2, kind="blf", number=number, label=label))
    return tuple(keys)


def render(
    desk: Desk,
    directory: Directory,
    seated: Extension | None,
    sip: SipSettings,
    *,
    provisioning_url: str = "",
) -> Files:
    """Every file the desk's phone requests, by file name, for the given desk state.

    ``desk.vendor`` (and ``desk.model`` for model-common files and overrides) must be
    set; the server fills them from the phone's request when the config leaves them
    empty. ``provisioning_url`` is where files pointing to other files (Snom) point;
    default ``http://<advertised host>:8081``.
    """
    if not desk.vendor:
        raise RenderError(f"desk {desk.name}: vendor unknown (set desks.vendor or let it fetch)")
    vendor = plugin(desk.vendor)
    label = one_line(f"{seated.number} {seated.name}") if seated is not None else desk.name
    names = vendor.file_names(desk.mac.lower(), desk.model)
    context = RenderContext(
        desk=desk.name,
        mac=desk.mac.lower(),
        model=desk.model,
        user_name=desk.name,
        auth_name=desk.name,
        password=desk.sip_password,
        display_name=label,
        label=label,
        server=sip_server(sip),
        keys=desk_keys(directory, seated),
        provisioning_url=provisioning_url or f"http://{sip.advertised_host}:8081",
        seated=seated.number if seated is not None else "",
        files={kind: name for name, kind in names.items()},
    )
    return {name: vendor.render_file(kind, context) for name, kind in sorted(names.items())}


def config_version(files: Files) -> str:
    """A short hash of every rendered byte: changes exactly when the phone's files do."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:16]


def check_templates(directory: Directory) -> list[tuple[str, str]]:
    """Config problems about templates, as (config key, explanation with the fix).

    As in the product note: a device in hot-desking mode uses the standard templates
    only; extensions that are not hot desks may have a custom template.
    """
    problems: list[tuple[str, str]] = []
    for n, desk in enumerate(directory.desks):
        if desk.template:
            problems.append(
                (
                    f"desks[{n}].template",
                    f"desk {desk.name} has custom template {desk.template!r}: desks in "
                    "hot-desking mode use the standard templates only; remove the key",
                )
            )
        if desk.vendor and desk.vendor not in _vendor_names():
            problems.append(
                (
                    f"desks[{n}].vendor",
                    f"desk {desk.name}: unknown vendor {desk.vendor!r}, use one of "
                    f"{', '.join(_vendor_names())}",
                )
            )
    return problems


def _vendor_names() -> list[str]:
    from .vendors import PLUGINS

    return sorted(PLUGINS)
