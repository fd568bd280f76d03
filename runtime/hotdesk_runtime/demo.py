"""The demo directory ``hotdesk up`` runs when no config file is given.

Four users (extensions 100-103, PINs 1000-1003), three desks of three vendors, a demo
emergency line on 127.0.0.1 and one admin whose password is generated on first start.
The PINs are public (documented in ``docs/configuration.md``): this is a demo, never a
deployment. So it listens on 127.0.0.1 only, and its SIP passwords are random, made on
first start and kept (mode 0600) in the data directory; opening it to phones on a LAN is
a deliberate override (``HOTDESK_SIP__LISTEN`` and friends).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from hotdesk_contracts.directory import (
    AdminUser,
    Config,
    Desk,
    Extension,
    HttpSettings,
    NatsSettings,
    ProvisioningSettings,
    SipSettings,
    Trunk,
)

from .config import hash_secret, verify_secret
from .pins import hash_pin

DEMO_USERS: tuple[tuple[str, str, str], ...] = (
    ("100", "Alice Archer", "1000"),
    ("101", "Bob Baker", "1001"),
    ("102", "Carol Cooper", "1002"),
    ("103", "Dave Draper", "1003"),
)
"""(extension, name, PIN) of the demo users."""

DEMO_BLF: dict[str, list[str]] = {
    "100": ["101", "102"],
    "101": ["100"],
    "102": ["100", "101", "103"],
    "103": [],
}

DEMO_DESKS: tuple[tuple[str, str, str], ...] = (
    ("HD0001", "805ec0000001", "yealink"),
    ("HD0002", "0004f2000002", "poly"),
    ("HD0003", "000413000003", "snom"),
)
"""(desk, MAC, vendor) of the demo desks; their SIP passwords are random."""

DEMO_LISTEN = "127.0.0.1"
"""The demo answers on this machine only: its PINs are public."""

DEMO_ADMIN = "admin"
DEMO_EMERGENCY_PORT = 5099
"""Where the demo emergency line (a SIP peer on 127.0.0.1) is expected."""

ADMIN_HASH_FILE = "admin-password.argon2"
SIP_PASSWORDS_FILE = "demo-sip-passwords.json"
"""Desk and extension SIP passwords of the demo, made on first start (mode 0600)."""


def random_sip_passwords() -> dict[str, str]:
    """A fresh random SIP password for every demo desk and extension."""
    names = [desk[0] for desk in DEMO_DESKS] + [user[0] for user in DEMO_USERS]
    return {name: secrets.token_urlsafe(12) for name in names}


def demo_config(
    admin_password_hash: str,
    *,
    nats_data_dir: str = "var/nats",
    emergency_port: int = DEMO_EMERGENCY_PORT,
    sip_passwords: Mapping[str, str] | None = None,
) -> Config:
    """The demo configuration (PINs hashed now; each call salts them afresh).

    ``sip_passwords`` maps desk names and extensions to SIP passwords (those kept by
    :func:`ensure_sip_passwords`); without it every password is random.
    """
    passwords = {**random_sip_passwords(), **(sip_passwords or {})}
    extensions = [
        Extension(
            number=number,
            name=name,
            sip_password=passwords[number],
            pin_hash=hash_pin(pin),
            blf=DEMO_BLF[number],
        )
        for number, name, pin in DEMO_USERS
    ]
    desks = [
        Desk(name=name, mac=mac, vendor=vendor, sip_password=passwords[name])
        for name, mac, vendor in DEMO_DESKS
    ]
    return Config(
        extensions=extensions,
        desks=desks,
        trunks=[
            Trunk(
                name="demo-emergency-line",
                uri=f"sip:127.0.0.1:{emergency_port};transport=udp",
                emergency=True,
            )
        ],
        admins=[AdminUser(username=DEMO_ADMIN, password_hash=admin_password_hash, role="admin")],
        nats=NatsSettings(data_dir=nats_data_dir),
        sip=SipSettings(listen=DEMO_LISTEN, advertised_host="127.0.0.1"),
        admin=HttpSettings(listen=DEMO_LISTEN),
        provisioning=ProvisioningSettings(listen=DEMO_LISTEN),
    )


@dataclass(frozen=True)
class AdminPassword:
    """The demo admin's password hash; ``new_password`` is set only on first start."""

    password_hash: str
    new_password: str | None


def ensure_admin_password(data_dir: Path) -> AdminPassword:
    """Reuse the admin password hash stored in ``data_dir``, or make one.

    On first start a random password is generated, its hash stored (mode 0600) and the
    password returned once so ``hotdesk up`` can print it; it is never stored in clear.
    """
    path = data_dir / ADMIN_HASH_FILE
    if path.exists():
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return AdminPassword(stored, None)
    data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    encoded = hash_secret(password)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(encoded + "\n")
    assert verify_secret(encoded, password)
    return AdminPassword(encoded, password)


@dataclass(frozen=True)
class SipPasswords:
    """The demo's SIP passwords; ``new`` is true only when they were just made."""

    passwords: dict[str, str]
    new: bool


def ensure_sip_passwords(data_dir: Path) -> SipPasswords:
    """Reuse the demo SIP passwords stored in ``data_dir``, or make and store them.

    SIP digest needs the password itself, so it is kept, readable by its owner only.
    A stored file that is unreadable or lacks a name is completed, never trusted blindly.
    """
    path = data_dir / SIP_PASSWORDS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        try:
            loaded = msgspec.json.decode(path.read_bytes(), type=dict[str, str])
        except msgspec.DecodeError:
            loaded = {}
        stored = {name: value for name, value in loaded.items() if value}
    wanted = random_sip_passwords()
    if all(name in stored for name in wanted):
        return SipPasswords({name: stored[name] for name in wanted}, new=False)
    passwords = {**wanted, **{k: v for k, v in stored.items() if k in wanted}}
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(msgspec.json.format(msgspec.json.encode(passwords)) + b"\n")
    return SipPasswords(passwords, new=True)
