"""A small directory with one desk per vendor and users with 0, 1 and 5 BLF keys."""

from __future__ import annotations

from hotdesk_contracts.directory import Desk, Directory, Extension, SipSettings

VENDOR_DESKS: dict[str, Desk] = {
    "yealink": Desk(
        name="HD0001",
        mac="805ec0123456",
        sip_password="desk-pw-1",
        vendor="yealink",
        model="T46S",
    ),
    "poly": Desk(
        name="HD0002",
        mac="0004f2a1b2c3",
        sip_password="desk-pw-2",
        vendor="poly",
        model="VVX_400",
    ),
    "snom": Desk(
        name="HD0003",
        mac="000413a1b2c3",
        sip_password="desk-pw-3",
        vendor="snom",
        model="D785",
    ),
    "grandstream": Desk(
        name="HD0004",
        mac="c074ad2bd859",
        sip_password="desk-pw-4",
        vendor="grandstream",
        model="GXP2170",
    ),
    "fanvil": Desk(
        name="HD0005",
        mac="0c383e07e16c",
        sip_password="desk-pw-5",
        vendor="fanvil",
        model="X4",
    ),
    "cisco": Desk(
        name="HD0006",
        mac="00562b043615",
        sip_password="desk-pw-6",
        vendor="cisco",
        model="7832",
    ),
}

DIRECTORY = Directory(
    extensions=[
        Extension(number="100", name="Alice Example"),
        Extension(number="101", name="Bob & Co", blf=["100"]),
        Extension(number="102", name="Carol", blf=["100", "101", "103", "104", "105"]),
        Extension(number="103", name="Dave"),
        Extension(number="104", name="Erin"),
        Extension(number="105", name="Frank"),
    ],
    desks=list(VENDOR_DESKS.values()),
)

SIP = SipSettings(advertised_host="192.0.2.10", port=5060)

CASES: dict[str, str | None] = {
    "idle": None,
    "blf0": "100",
    "blf1": "101",
    "blf5": "102",
}
"""Golden case name -> seated extension (``None``: idle)."""
