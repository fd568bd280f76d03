"""Detection of vendor, model, MAC and firmware from real request paths and agents."""

from __future__ import annotations

import pytest

from hotdesk_provisioner.vendors import PLUGINS, Detection, FileRole, detect


@pytest.mark.parametrize(
    ("path", "agent", "expected"),
    [
        (
            "/805ec0123456.cfg",
            "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56",
            Detection(
                "yealink", "T46S", "805ec0123456", "66.86.0.15", "805ec0123456.cfg", FileRole.DESK
            ),
        ),
        (
            "/y000000000066.cfg",
            "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56",
            Detection(
                "yealink",
                "T46S",
                "805ec0123456",
                "66.86.0.15",
                "y000000000066.cfg",
                FileRole.COMMON,
            ),
        ),
        (
            "/0004f2a1b2c3.cfg",
            "FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430 Type/Application",
            Detection(
                "poly", "VVX_400", "0004f2a1b2c3", "4.1.4.7430", "0004f2a1b2c3.cfg", FileRole.DESK
            ),
        ),
        (
            "/000000000000.cfg",
            "FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430 Type/Application",
            Detection("poly", "VVX_400", None, "4.1.4.7430", "000000000000.cfg", FileRole.COMMON),
        ),
        (
            "/snomD785.htm",
            "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33)",
            Detection("snom", "D785", None, "10.1.33.33", "snomD785.htm", FileRole.COMMON),
        ),
        (
            "/snomD785-000413A1B2C3.htm",
            "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 000413A1B2C3)",
            Detection(
                "snom",
                "D785",
                "000413a1b2c3",
                "10.1.33.33",
                "snomD785-000413A1B2C3.htm",
                FileRole.DESK,
            ),
        ),
        (
            "/cfgc074ad2bd859.xml",
            "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId c074ad2bd859",
            Detection(
                "grandstream",
                "GXP2170",
                "c074ad2bd859",
                "1.0.11.3",
                "cfgc074ad2bd859.xml",
                FileRole.DESK,
            ),
        ),
        (
            "/0c383e07e16c.cfg",
            "Fanvil X4U 2.10.2.6887 0c383e07e16c",
            Detection(
                "fanvil", "X4U", "0c383e07e16c", "2.10.2.6887", "0c383e07e16c.cfg", FileRole.DESK
            ),
        ),
        (
            "/f0X4hw1.100.cfg",
            "Fanvil X4 2.10.2.6887 0c383e07e16c",
            Detection(
                "fanvil", "X4", "0c383e07e16c", "2.10.2.6887", "f0X4hw1.100.cfg", FileRole.COMMON
            ),
        ),
        (
            "/00562B043615.xml",
            "Cisco-CP-7832-3PCC/11.0.1 (00562b043615)",
            Detection("cisco", "7832", "00562b043615", "11.0.1", "00562B043615.xml", FileRole.DESK),
        ),
    ],
)
def test_detector_reads_vendor_model_mac_and_firmware(
    path: str, agent: str, expected: Detection
) -> None:
    assert detect(path, agent) == expected


@pytest.mark.parametrize(
    "agent",
    [
        "",
        "curl/8.5.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36",
        "Wget/1.21",
        "Linphone/5.2 (belle-sip/5.2)",
    ],
)
def test_unknown_agents_are_not_detected(agent: str) -> None:
    assert detect("/805ec0123456.cfg", agent) is None


@pytest.mark.parametrize(
    ("path", "agent"),
    [
        # Yealink, Fanvil, Grandstream and Poly ask with the MAC lowercase ...
        ("/805EC0123456.cfg", "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56"),
        ("/CFGC074AD2BD859.xml", "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId c074ad2bd859"),
        ("/cfgC074AD2BD859.xml", "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId c074ad2bd859"),
        ("/0C383E07E16C.cfg", "Fanvil X4U 2.10.2.6887 0c383e07e16c"),
        # ... Snom and Cisco uppercase.
        ("/snomD785-000413a1b2c3.htm", "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33)"),
        ("/00562b043615.xml", "Cisco-CP-7832-3PCC/11.0.1 (00562b043615)"),
        # Not a provisioning file at all.
        ("/etc/passwd", "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56"),
    ],
)
def test_file_names_in_the_wrong_casing_are_not_the_vendors_files(path: str, agent: str) -> None:
    assert detect(path, agent) is None


def test_every_vendor_has_its_refetch_notify_event() -> None:
    events = {name: plugin.notify_event for name, plugin in PLUGINS.items()}
    assert events == {
        "yealink": "check-sync;reboot=false",
        "poly": "check-sync",
        "snom": "check-sync;reboot=false",
        "grandstream": "check-sync",
        "fanvil": "check-sync",
        "cisco": "resync",
    }
