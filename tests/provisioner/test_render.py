"""Rendering: golden files per vendor and desk state, key names from the vendor facts,
the hot-desk rules (own SIP account, logout key first, BLF keys shifted)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import msgspec
import pytest

from hotdesk_contracts.directory import Desk, Directory, Extension, SipSettings
from hotdesk_provisioner.render import (
    RenderError,
    check_templates,
    config_version,
    render,
)
from tests.provisioner.samples import CASES, DIRECTORY, SIP, VENDOR_DESKS

GOLDEN = Path(__file__).parent / "golden"

# Key names per vendor as the vendor facts list them (digits that count accounts, keys
# or lines written as N), plus the document structure each format needs.
EXPECTED_KEYS: dict[str, set[str]] = {
    "yealink": {
        "account.N.enable",
        "account.N.user_name",
        "account.N.auth_name",
        "account.N.password",
        "account.N.sip_server.N.address",
        "account.N.sip_server.N.port",
        "account.N.sip_server.N.transport_type",
        "account.N.display_name",
        "account.N.label",
        "linekey.N.type",
        "linekey.N.line",
        "linekey.N.value",
        "linekey.N.label",
        "linekey.N.extension",
        "sip.notify_reboot_enable",
        "sip.trust_ctrl",
    },
    "poly": {
        "APPLICATION",
        "APP_FILE_PATH",
        "CONFIG_FILES",
        "polycomConfig",
        "reg.N.address",
        "reg.N.auth.userId",
        "reg.N.auth.password",
        "reg.N.server.N.address",
        "reg.N.server.N.port",
        "reg.N.server.N.transport",
        "reg.N.displayName",
        "reg.N.label",
        "attendant.resourceList.N.address",
        "attendant.resourceList.N.label",
        "voIpProt.SIP.specialEvent.checkSync.alwaysReboot",
    },
    "snom": {
        "settings",
        "phone-settings",
        "e",
        "idx",
        "perm",
        "context",
        "label",
        "user_active",
        "user_name",
        "user_pname",
        "user_pass",
        "user_host",
        "user_outbound",
        "user_realname",
        "user_idle_text",
        "update_policy",
        "functionKeys",
        "fkey",
        "setting-files",
        "file",
        "url",
    },
    "grandstream": {
        "gs_provision",
        "version",
        "mac",
        "config",
        "item",
        "name",
        "account.N.enable",
        "account.N.name",
        "account.N.sip.server.N.address",
        "account.N.sip.userid",
        "account.N.sip.subscriber.userid",
        "account.N.sip.subscriber.password",
        "account.N.sip.subscriber.name",
        "P26015",
        "pks.vpk.N.keyMode",
        "pks.vpk.N.account",
        "pks.vpk.N.description",
        "pks.vpk.N.value",
    },
    "fanvil": {
        "sysConf",
        "sip",
        "line",
        "index",
        "PhoneNumber",
        "DisplayName",
        "RegisterAddr",
        "RegisterPort",
        "RegisterUser",
        "RegisterPswd",
        "EnableReg",
        "phone",
        "display",
        "LCDTitle",
        "dsskey",
        "Fkey",
        "Type",
        "Value",
        "Title",
    },
    "cisco": {
        "flat-profile",
        "Station_Name",
        "Resync_From_SIP",
        "Line_Enable_N_",
        "User_ID_N_",
        "Auth_ID_N_",
        "Use_Auth_ID_N_",
        "Password_N_",
        "Proxy_N_",
        "Display_Name_N_",
        "Extended_Function_N_",
    },
}

_COUNTER = re.compile(r"(?<=[._])\d+(?=[._]|$)")


def _key_names(vendor: str, data: bytes) -> set[str]:
    if vendor == "yealink":
        lines = data.decode().splitlines()
        assert lines[0] == "#!version:1.0.0.1"
        names = {line.split(" = ", 1)[0] for line in lines[1:] if line.strip()}
    else:
        names = set()
        for element in ET.fromstring(data).iter():
            names.add(element.tag)
            if vendor == "grandstream" and element.tag == "item":
                names.add(element.attrib["name"])
            names.update(element.attrib)
    return {_COUNTER.sub("N", name) for name in names}


def _render_case(vendor: str, case: str) -> dict[str, bytes]:
    seated = CASES[case]
    user = DIRECTORY.extension(seated) if seated else None
    return render(VENDOR_DESKS[vendor], DIRECTORY, user, SIP)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("vendor", list(VENDOR_DESKS))
def test_rendered_files_match_golden_bytes(vendor: str, case: str) -> None:
    folder = GOLDEN / vendor / case
    files = _render_case(vendor, case)
    assert sorted(files) == sorted(p.name for p in folder.iterdir())
    for name, data in files.items():
        assert data == (folder / name).read_bytes(), f"{vendor}/{case}/{name} differs"


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("vendor", list(VENDOR_DESKS))
def test_every_key_name_is_one_the_vendor_documents(vendor: str, case: str) -> None:
    used: set[str] = set()
    for data in _render_case(vendor, case).values():
        used |= _key_names(vendor, data)
    assert used - EXPECTED_KEYS[vendor] == set()


@pytest.mark.parametrize("vendor", list(VENDOR_DESKS))
def test_idle_desk_shows_its_name_and_only_the_logout_key(vendor: str) -> None:
    text = b"".join(_render_case(vendor, "idle").values()).decode()
    desk = VENDOR_DESKS[vendor]
    assert desk.name in text
    assert desk.sip_password in text
    assert "*77*5*" in text
    assert "Logout" in text
    assert "Alice" not in text


@pytest.mark.parametrize("vendor", list(VENDOR_DESKS))
def test_logged_in_desk_keeps_its_own_account_and_shows_the_user(vendor: str) -> None:
    directory = msgspec.structs.replace(
        DIRECTORY,
        extensions=[
            Extension(number="100", name="Alice Example", sip_password="USER-SECRET"),
            *DIRECTORY.extensions[1:],
        ],
    )
    desk = VENDOR_DESKS[vendor]
    files = render(desk, directory, directory.extension("100"), SIP)
    text = b"".join(files.values()).decode()
    assert "100 Alice Example" in text
    assert desk.sip_password in text
    assert "USER-SECRET" not in text


def test_yealink_keys_put_logout_first_and_shift_blf_keys_down_by_one() -> None:
    cfg = _render_case("yealink", "blf5")["805ec0123456.cfg"].decode()
    values = dict(line.split(" = ", 1) for line in cfg.splitlines()[1:])
    assert (values["linekey.1.type"], values["linekey.1.value"]) == ("13", "*77*5*")
    assert values["linekey.1.label"] == "Logout"
    blf = [(values[f"linekey.{n}.type"], values[f"linekey.{n}.value"]) for n in range(2, 7)]
    assert blf == [("16", "100"), ("16", "101"), ("16", "103"), ("16", "104"), ("16", "105")]
    assert values["linekey.7.type"] == "0"
    assert values["sip.notify_reboot_enable"] == "0"


def test_a_logout_clears_the_keys_the_previous_user_had() -> None:
    idle = _render_case("yealink", "idle")["805ec0123456.cfg"].decode()
    assert "linekey.2.type = 0" in idle
    assert "linekey.2.value = %NULL%" in idle


def test_model_override_limits_keys_to_what_the_model_has() -> None:
    desk = msgspec.structs.replace(VENDOR_DESKS["yealink"], model="T31P")
    cfg = render(desk, DIRECTORY, DIRECTORY.extension("102"), SIP)["805ec0123456.cfg"]
    assert b"linekey.2.value = 100" in cfg
    assert b"linekey.3." not in cfg


def test_a_label_cannot_inject_a_line_into_a_key_value_file() -> None:
    directory = Directory(
        extensions=[Extension(number="100", name="Eve\naccount.1.password = x")],
        desks=[VENDOR_DESKS["yealink"]],
    )
    cfg = render(VENDOR_DESKS["yealink"], directory, directory.extension("100"), SIP)
    lines = cfg["805ec0123456.cfg"].decode().splitlines()
    assert "account.1.password = desk-pw-1" in lines
    assert not any(line.startswith("account.1.password = x") for line in lines)


def test_config_version_changes_with_the_desk_state_and_only_then() -> None:
    idle = config_version(_render_case("poly", "idle"))
    assert idle == config_version(_render_case("poly", "idle"))
    assert idle != config_version(_render_case("poly", "blf0"))


def test_tls_edge_is_written_as_tls_transport() -> None:
    sip = SipSettings(advertised_host="pbx.example", tls_cert="/c.pem", tls_port=5061)
    cfg = render(VENDOR_DESKS["yealink"], DIRECTORY, None, sip)["805ec0123456.cfg"]
    assert b"account.1.sip_server.1.transport_type = 2" in cfg
    assert b"account.1.sip_server.1.port = 5061" in cfg


def test_a_desk_without_a_known_vendor_cannot_be_rendered() -> None:
    desk = Desk(name="HD0009", mac="001565000009", sip_password="pw")
    with pytest.raises(RenderError, match="vendor unknown"):
        render(desk, DIRECTORY, None, SIP)


def test_desk_with_custom_template_is_rejected_but_an_extension_may_have_one() -> None:
    directory = Directory(
        extensions=[Extension(number="100", name="A", template="my-own.j2")],
        desks=[Desk(name="HD0001", mac="805ec0123456", sip_password="pw", template="x.j2")],
    )
    problems = check_templates(directory)
    assert problems == [
        (
            "desks[0].template",
            "desk HD0001 has custom template 'x.j2': desks in hot-desking mode use the "
            "standard templates only; remove the key",
        )
    ]
    assert check_templates(DIRECTORY) == []


@pytest.mark.parametrize(
    ("vendor", "model", "keys", "last_key_marker"),
    [
        ("yealink", "T31P", 2, b"linekey.3."),
        ("poly", "VVX_150", 2, b"attendant.resourceList.3."),
        ("snom", "D713", 4, b'<fkey idx="4"'),
        ("grandstream", "GRP2601", 2, b"pks.vpk.3."),
        ("fanvil", "X4U", 3, b'<Fkey index="4">'),
        ("cisco", "6821", 2, b"<Extended_Function_3_>"),
    ],
)
def test_every_vendor_has_a_model_override_that_fits_its_keys(
    vendor: str, model: str, keys: int, last_key_marker: bytes
) -> None:
    desk = msgspec.structs.replace(VENDOR_DESKS[vendor], model=model)
    text = b"".join(render(desk, DIRECTORY, DIRECTORY.extension("102"), SIP).values())
    assert b"Logout" in text
    assert b"Alice Example" in text  # key 2: the first BLF key
    assert last_key_marker not in text
