"""The demo directory ``hotdesk up`` runs when no config file is given.

Four users (extensions 100-103, PINs 1000-1003), three desks of three vendors, a demo
emergency line on 127.0.0.1 and one admin whose password is generated on first start.
The PINs are public (documented in ``docs/configuration.md``): this is a demo, never a
deployment.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from hotdesk_contracts.directory import (
    AdminUser,
    Config,
    Desk,
    Extension,
    NatsSettings,
    SipSettings,
    Trunk,
)

from .config import hash_secret, verify_secret

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

DEMO_DESKS: tuple[tuple[str, str, str, str], ...] = (
    ("HD0001", "805ec0000001", "yealink", "demo-HD0001-sip"),
    ("HD0002", "0004f2000002", "poly", "demo-HD0002-sip"),
    ("HD0003", "000413000003", "snom", "demo-HD0003-sip"),
)
"""(desk, MAC, vendor, SIP password) of the demo desks."""

DEMO_ADMIN = "admin"
DEMO_EMERGENCY_PORT = 5099
"""Where the demo emergency line (a SIP peer on 127.0.0.1) is expected."""

ADMIN_HASH_FILE = "admin-password.argon2"


def demo_config(
    admin_password_hash: str,
    *,
    nats_data_dir: str = "var/nats",
    emergency_port: int = DEMO_EMERGENCY_PORT,
) -> Config:
    """The demo configuration (PINs hashed now; each call salts them afresh)."""
    extensions = [
        Extension(
            number=number,
            name=name,
            sip_password=f"demo-{number}-sip",
            pin_hash=hash_secret(pin),
            blf=DEMO_BLF[number],
        )
        for number, name, pin in DEMO_USERS
    ]
    desks = [
        Desk(name=name, mac=mac, vendor=vendor, sip_password=password)
        for name, mac, vendor, password in DEMO_DESKS
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
        sip=SipSettings(advertised_host="127.0.0.1"),
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
