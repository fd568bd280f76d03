"""The benchmark's desks: many Yealink desks, half of them with a user seated."""

from __future__ import annotations

from hotdesk_contracts.directory import Desk, Directory, Extension, SipSettings

SIP = SipSettings(advertised_host="127.0.0.1")
USER_AGENT = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:00:00:00"


def mac(n: int) -> str:
    """The n-th desk's MAC (lowercase, as a Yealink requests it)."""
    return f"805ec0{n:06x}"


def fleet(count: int) -> Directory:
    """``count`` desks ``HD0001``… with passwords ``pw-<n>`` and 50 users with BLF keys."""
    users = [
        Extension(
            number=f"{200 + u}",
            name=f"User {u}",
            blf=[f"{200 + (u + k) % 50}" for k in range(1, 6)],
        )
        for u in range(50)
    ]
    desks = [
        Desk(
            name=f"HD{n:04d}",
            mac=mac(n),
            sip_password=f"pw-{n}",
            vendor="yealink",
            model="T46S",
        )
        for n in range(1, count + 1)
    ]
    return Directory(extensions=users, desks=desks)
