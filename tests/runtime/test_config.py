"""Config loading: every kind of bad file gives the documented problem, with key and line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotdesk_runtime.config import (
    CUSTOM_TEMPLATE_MESSAGE,
    ConfigError,
    LineIndex,
    Problem,
    check_file,
    format_path,
    hash_secret,
    load_config,
    parse_path,
    verify_secret,
)
from hotdesk_runtime.demo import demo_config

PIN_HASH = hash_secret("1000")

GOOD = f"""\
[sip]
port = 5070

[[extensions]]
number = "100"
name = "Alice"
pin_hash = "{PIN_HASH}"
blf = ["101"]

[[extensions]]
number = "101"
name = "Bob"

[[desks]]
name = "HD0001"
mac = "001565aabbcc"
sip_password = "s1"

[[desks]]
name = "HD0002"
mac = "001565aabbcd"
sip_password = "s2"

[[trunks]]
name = "emergency"
uri = "sip:127.0.0.1:5099"
emergency = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hotdesk.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[Problem]:
    _, problems = check_file(write(tmp_path, text), env or {})
    return problems


def errors_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[Problem]:
    return [p for p in problems_of(tmp_path, text, env) if p.severity == "error"]


def line_of(text: str, needle: str, nth: int = 1) -> int:
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == nth:
                return number
    raise AssertionError(f"{needle!r} not in text")


def test_a_good_file_loads_without_problems(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, GOOD), env={})
    assert loaded.config.sip.port == 5070
    assert [d.name for d in loaded.config.desks] == ["HD0001", "HD0002"]
    assert loaded.warnings == []


def test_unknown_key_names_the_key_the_line_and_a_suggestion(tmp_path: Path) -> None:
    text = GOOD.replace("port = 5070", "prot = 5070")
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "sip.prot"
    assert problem.line == line_of(text, "prot = 5070")
    assert problem.message == "unknown key 'prot' (did you mean 'port'?)"
    assert f"line {problem.line}" in str(problem)


def test_unknown_top_level_key_is_reported(tmp_path: Path) -> None:
    text = "extenssions = []\n" + GOOD
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "extenssions"
    assert problem.line == 1
    assert "did you mean 'extensions'?" in problem.message


def test_wrong_type_names_the_key_and_line(tmp_path: Path) -> None:
    text = GOOD.replace("port = 5070", 'port = "fifty"')
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "sip.port"
    assert problem.line == line_of(text, 'port = "fifty"')
    assert problem.message == "expected a whole number, got a string (in quotes)"


def test_bad_mac_in_the_second_desk_points_at_its_line(tmp_path: Path) -> None:
    text = GOOD.replace('mac = "001565aabbcd"', 'mac = "00:15:65:aa:bb:cd"')
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "desks[1].mac"
    assert problem.line == line_of(text, "00:15:65")
    assert problem.message == "expected 12 hex digits, no separators"


def test_every_structural_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    text = GOOD.replace("port = 5070", "prot = 5070").replace('mac = "001565aabbcd"', 'mac = "zz"')
    keys = [p.key for p in errors_of(tmp_path, text)]
    assert keys == ["sip.prot", "desks[1].mac"]


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    text = GOOD.replace('sip_password = "s2"\n', "")
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "desks[1].sip_password"
    assert problem.message == "missing required key 'sip_password'"
    assert problem.line == line_of(text, "[[desks]]", nth=2)


def test_duplicate_desk_is_an_error_at_the_second_one(tmp_path: Path) -> None:
    text = GOOD.replace('name = "HD0002"', 'name = "HD0001"')
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "desks[1].name"
    assert problem.line == line_of(text, 'name = "HD0001"', nth=2)
    assert problem.message == "desk HD0001 is defined twice (also desks[0])"


def test_duplicate_mac_and_extension_are_errors(tmp_path: Path) -> None:
    text = GOOD.replace('mac = "001565aabbcd"', 'mac = "001565AABBCC"').replace(
        'number = "101"', 'number = "100"'
    )
    messages = {p.key: p.message for p in errors_of(tmp_path, text)}
    assert messages["desks[1].mac"] == "MAC 001565AABBCC is used twice (also desks[0])"
    assert messages["extensions[1].number"] == (
        "extension 100 is defined twice (also extensions[0])"
    )


def test_desk_with_a_custom_template_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace('sip_password = "s2"', 'sip_password = "s2"\ntemplate = "mine.j2"')
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "desks[1].template"
    assert problem.line == line_of(text, "template =")
    assert problem.message == CUSTOM_TEMPLATE_MESSAGE


def test_dial_code_starting_with_star_seven_is_refused(tmp_path: Path) -> None:
    text = GOOD + '\n[dial_codes]\nother = [{ code = "*72", name = "pickup" }]\n'
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "dial_codes.other[0].code"
    assert problem.line == line_of(text, "other = [")
    assert "no other dial code may start with '*7'" in problem.message


def test_logout_code_colliding_with_an_extensions_login_code_is_refused(tmp_path: Path) -> None:
    # *77*55* is both the logout code and the login code for extension 55.
    text = GOOD.replace('number = "101"', 'number = "55"').replace('blf = ["101"]', "blf = []")
    text += '\n[dial_codes]\nlogout = "*77*55*"\n'
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "dial_codes.logout"
    assert problem.line == line_of(text, "logout =")
    assert "renumber extension 55 or choose another logout code" in problem.message


def test_blf_naming_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace('blf = ["101"]', 'blf = ["101", "999"]')
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "extensions[0].blf[1]"
    assert problem.line == line_of(text, "blf =")
    assert problem.message == "BLF entry names unknown extension 999"


def test_pin_in_clear_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace(PIN_HASH, "1234")
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "extensions[0].pin_hash"
    assert "not an argon2 hash" in problem.message
    assert "1234" not in str(problem)


def test_admin_password_in_clear_is_refused(tmp_path: Path) -> None:
    text = GOOD + '\n[[admins]]\nusername = "root"\npassword_hash = "hunter2"\n'
    [problem] = errors_of(tmp_path, text)
    assert problem.key == "admins[0].password_hash"
    assert "not an argon2 hash" in problem.message


def test_no_emergency_trunk_is_a_loud_warning_not_an_error(tmp_path: Path) -> None:
    text = GOOD.replace("emergency = true", "emergency = false")
    problems = problems_of(tmp_path, text)
    assert [p.severity for p in problems] == ["warning"]
    assert "NO EMERGENCY TRUNK" in problems[0].message
    assert load_config(write(tmp_path, text), env={}).warnings == problems


def test_port_conflicts_inverted_rtp_range_timezone_and_daily_logout(tmp_path: Path) -> None:
    text = GOOD.replace(
        "port = 5070",
        "port = 8080\nrtp_port_min = 30000\nrtp_port_max = 20000",
    )
    text += '\n[policies]\ntimezone = "Mars/Olympus"\ndaily_logout = "25:00"\n'
    messages = {p.key: p.message for p in errors_of(tmp_path, text)}
    assert messages["admin.port"] == "port 8080 is also used by sip.port"
    assert messages["sip.rtp_port_min"].startswith("RTP port range is inverted")
    assert messages["policies.timezone"].startswith("unknown time zone 'Mars/Olympus'")
    assert messages["policies.daily_logout"].startswith("'25:00' is not a time")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["MD5", "MD5"]', "an algorithm is listed twice"),
        ('["SHA-512"]', "SHA-512"),
        ("[]", "length >= 1"),
    ],
)
def test_digest_algorithms_must_be_known_and_listed_once(
    tmp_path: Path, value: str, expected: str
) -> None:
    text = GOOD.replace("port = 5070", f"port = 5070\ndigest_algorithms = {value}")
    [problem] = errors_of(tmp_path, text)
    assert problem.key.startswith("sip.digest_algorithms")
    assert expected in problem.message


def test_digest_algorithms_in_preference_order_load(tmp_path: Path) -> None:
    text = GOOD.replace("port = 5070", 'port = 5070\ndigest_algorithms = ["SHA-256", "MD5"]')
    assert load_config(write(tmp_path, text), env={}).config.sip.digest_algorithms == [
        "SHA-256",
        "MD5",
    ]


def test_missing_file_is_one_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml", env={})
    [problem] = caught.value.problems
    assert problem.message == f"config file {tmp_path / 'nope.toml'} not found"


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, GOOD + "\nthis is not toml\n")
    assert problem.line == len(GOOD.splitlines()) + 2
    assert problem.message.startswith("not valid TOML")


def test_config_path_comes_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    loaded = load_config(None, env={"HOTDESK_CONFIG": str(path)})
    assert loaded.path == path


def test_env_overrides_set_sections_lists_and_keep_strings_raw(tmp_path: Path) -> None:
    env = {
        "HOTDESK_SIP__PORT": "5080",
        "HOTDESK_NATS__URL": "nats://nats.example:4222",
        "HOTDESK_NATS__REPLICAS": "3",
        "HOTDESK_EMERGENCY_NUMBERS": '["112", "999"]',
        "HOTDESK_DESKS__1__SIP_PASSWORD": "12345",
        "HOTDESK_POLICIES__EXCLUSIVE": "false",
        "HOTDESK_TOKEN": "not a config key",
    }
    config = load_config(write(tmp_path, GOOD), env=env).config
    assert config.sip.port == 5080
    assert config.nats.url == "nats://nats.example:4222"
    assert config.nats.replicas == 3
    assert config.emergency_numbers == ["112", "999"]
    assert config.desks[1].sip_password == "12345"
    assert config.policies.exclusive is False


def test_env_override_with_a_bad_value_names_the_variable(tmp_path: Path) -> None:
    env = {"HOTDESK_SIP__PORT": "lots"}
    [problem] = errors_of(tmp_path, GOOD, env)
    assert problem.key == "sip.port"
    assert problem.variable == "HOTDESK_SIP__PORT"
    assert problem.line is None
    assert "environment variable HOTDESK_SIP__PORT" in str(problem)


def test_env_override_of_an_unknown_key_names_the_variable(tmp_path: Path) -> None:
    [problem] = errors_of(tmp_path, GOOD, {"HOTDESK_SIP__PROT": "5070"})
    assert problem.variable == "HOTDESK_SIP__PROT"
    assert problem.message == "unknown key 'prot' (did you mean 'port'?)"


def test_env_override_of_a_missing_list_item_is_refused(tmp_path: Path) -> None:
    [problem] = errors_of(tmp_path, GOOD, {"HOTDESK_DESKS__7__SIP_PASSWORD": "x"})
    assert problem.variable == "HOTDESK_DESKS__7__SIP_PASSWORD"
    assert problem.key == "desks[7]"


def test_cross_field_error_caused_by_an_env_override_names_the_variable(tmp_path: Path) -> None:
    [problem] = errors_of(tmp_path, GOOD, {"HOTDESK_ADMIN__PORT": "5070"})
    assert problem.key == "admin.port"
    assert problem.variable == "HOTDESK_ADMIN__PORT"


def test_the_demo_configuration_is_valid() -> None:
    loaded = load_config(None, env={}, default=demo_config(hash_secret("admin-secret")))
    assert [e.number for e in loaded.config.extensions] == ["100", "101", "102", "103"]
    assert loaded.warnings == []
    for ext, pin in zip(loaded.config.extensions, ["1000", "1001", "1002", "1003"], strict=True):
        assert verify_secret(ext.pin_hash, pin)


def test_secret_hashes_verify_only_the_right_secret() -> None:
    encoded = hash_secret("4321")
    assert encoded.startswith("$argon2id$")
    assert verify_secret(encoded, "4321")
    assert not verify_secret(encoded, "4322")
    assert not verify_secret("not a hash", "4321")


def test_line_index_follows_tables_arrays_of_tables_and_dotted_keys() -> None:
    text = (
        '[[desks]]\nname = "a"\n[desks.policy]\ndaily_logout = "x"\n'
        '[[desks]]\npolicy.daily_logout = "y"\n'
    )
    index = LineIndex(text)
    assert index.line_of(["desks", 0, "name"]) == 2
    assert index.line_of(["desks", 0, "policy", "daily_logout"]) == 4
    assert index.line_of(["desks", 1, "policy", "daily_logout"]) == 6
    assert index.line_of(["desks", 1]) == 5


@given(
    st.lists(
        st.one_of(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.integers(0, 99)),
        min_size=1,
        max_size=5,
    ).filter(lambda parts: isinstance(parts[0], str))
)
def test_key_paths_round_trip(parts: list[str | int]) -> None:
    assert parse_path(format_path(parts)) == parts


_NAMES = st.sampled_from(["sip", "nats", "desks", "extensions", "policy", "trunks"])
_KEYS = st.lists(st.sampled_from(["a", "b", "port", "mac", "name"]), unique=True, max_size=3)


@given(st.lists(st.tuples(st.booleans(), _NAMES, _KEYS), max_size=8))
def test_line_index_finds_every_key_tomllib_reads(
    blocks: list[tuple[bool, str, list[str]]],
) -> None:
    lines: list[str] = []
    expected: dict[tuple[str | int, ...], int] = {}
    arrays: dict[str, int] = {}
    tables: set[str] = set()
    for is_array, name, keys in blocks:
        # TOML forbids mixing [x] and [[x]] or repeating [x]: skip such blocks.
        if (is_array and name in tables) or (not is_array and (name in arrays or name in tables)):
            continue
        if is_array:
            arrays[name] = arrays.get(name, -1) + 1
            lines.append(f"[[{name}]]")
            prefix: tuple[str | int, ...] = (name, arrays[name])
        else:
            tables.add(name)
            lines.append(f"[{name}]")
            prefix = (name,)
        for key in keys:
            lines.append(f"{key} = 1")
            expected[(*prefix, key)] = len(lines)
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # the generated document is valid TOML
    index = LineIndex(text)
    for path, line in expected.items():
        assert index.line_of(list(path)) == line, path
