"""PIN hashes: the PIN profile, the pepper, old hashes, and what check-config says."""

from __future__ import annotations

from pathlib import Path

import argon2
import pytest

from hotdesk_runtime import pins
from hotdesk_runtime.config import Problem, check_file, hash_secret

PEPPER = "0123456789abcdef-pepper"
OTHER_PEPPER = "fedcba9876543210-pepper"


def test_a_pin_hash_is_argon2id_with_the_pin_profile_and_checks_only_its_pin() -> None:
    encoded = pins.hash_pin("2468")
    params = argon2.extract_parameters(encoded)
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (
        argon2.Type.ID,
        pins.PIN_PARAMETERS.memory_cost,
        pins.PIN_PARAMETERS.time_cost,
        pins.PIN_PARAMETERS.parallelism,
    )
    assert pins.verify_pin_hash(encoded, "2468")
    assert not pins.verify_pin_hash(encoded, "2469")


def test_a_peppered_hash_names_its_pepper_and_checks_only_with_it() -> None:
    encoded = pins.hash_pin("2468", PEPPER)
    assert encoded.startswith(f"peppered:{pins.fingerprint(PEPPER)}:$argon2id$")
    assert PEPPER not in encoded
    assert pins.is_pin_hash(encoded)
    assert pins.verify_pin_hash(encoded, "2468", PEPPER)
    assert not pins.verify_pin_hash(encoded, "2469", PEPPER)


def test_the_argon2_part_of_a_peppered_hash_alone_does_not_check_the_pin() -> None:
    # What a stolen directory holds: without the pepper the PIN is no input to test.
    _, argon2_part = pins.split_pin_hash(pins.hash_pin("2468", PEPPER))
    assert not pins.verify_pin_hash(argon2_part, "2468")


@pytest.mark.parametrize("pepper", ["", OTHER_PEPPER], ids=["none", "another"])
def test_a_peppered_hash_checked_without_its_pepper_is_an_error_not_a_wrong_pin(
    pepper: str,
) -> None:
    encoded = pins.hash_pin("2468", PEPPER)
    with pytest.raises(pins.PepperMismatch):
        pins.verify_pin_hash(encoded, "2468", pepper)


def test_hashes_made_before_the_pin_profile_keep_verifying_with_or_without_a_pepper() -> None:
    old = argon2.PasswordHasher().hash("2468")  # m=64 MiB, t=3, p=4: older releases
    assert pins.verify_pin_hash(old, "2468")
    assert pins.verify_pin_hash(old, "2468", PEPPER)
    assert not pins.verify_pin_hash(old, "1357", PEPPER)


def test_a_short_pepper_and_an_empty_pin_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        pins.hash_pin("2468", "short")
    with pytest.raises(ValueError, match="empty"):
        pins.hash_pin("")


@pytest.mark.parametrize(
    "value", ["1234", "peppered:abc:$argon2id$x", "peppered:0123456789:" + "$argon2id$x", ""]
)
def test_what_is_no_pin_hash(value: str) -> None:
    assert not pins.is_pin_hash(value)


def test_admin_passwords_keep_the_strong_defaults() -> None:
    params = argon2.extract_parameters(hash_secret("a long admin password"))
    assert params.memory_cost == argon2.PasswordHasher().memory_cost
    assert params.memory_cost > pins.PIN_PARAMETERS.memory_cost


def config_text(*pin_hashes: str, pepper: str | None = None) -> str:
    lines = []
    if pepper is not None:
        lines += ["[pins]", f'pepper = "{pepper}"', ""]
    for n, pin_hash in enumerate(pin_hashes):
        lines += ["[[extensions]]", f'number = "1{n:02d}"', 'name = "U"']
        lines += [f'pin_hash = "{pin_hash}"', ""]
    lines += ["[[trunks]]", 'name = "e"', 'uri = "sip:127.0.0.1:5099"', "emergency = true"]
    return "\n".join(lines) + "\n"


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[Problem]:
    path = tmp_path / "hotdesk.toml"
    path.write_text(text)
    _, found = check_file(path, env or {})
    return found


def test_check_config_refuses_a_hash_made_with_another_pepper(tmp_path: Path) -> None:
    text = config_text(pins.hash_pin("1", PEPPER), pins.hash_pin("2", OTHER_PEPPER), pepper=PEPPER)
    [problem] = problems(tmp_path, text)
    assert (problem.severity, problem.key) == ("error", "extensions[1].pin_hash")
    assert pins.fingerprint(OTHER_PEPPER) in problem.message
    assert PEPPER not in str(problem)


def test_check_config_warns_of_unpeppered_hashes_beside_a_pepper(tmp_path: Path) -> None:
    text = config_text(pins.hash_pin("1", PEPPER), pins.hash_pin("2"), pepper=PEPPER)
    [problem] = problems(tmp_path, text)
    assert (problem.severity, problem.key) == ("warning", "extensions")
    assert "1 PIN hash(es) made without the pepper" in problem.message


def test_the_pepper_comes_from_the_environment_and_must_be_long(tmp_path: Path) -> None:
    text = config_text(pins.hash_pin("1", PEPPER))
    assert problems(tmp_path, text, {"HOTDESK_PINS__PEPPER": PEPPER}) == []
    [problem] = problems(tmp_path, text, {"HOTDESK_PINS__PEPPER": "short"})
    assert (problem.key, problem.variable) == ("pins.pepper", "HOTDESK_PINS__PEPPER")
    assert "short" not in problem.message


def test_peppered_hashes_without_a_pepper_pass_check_config(tmp_path: Path) -> None:
    # Only the IVR and hash-pin are given the pepper; the other services read the same
    # file without it.
    assert problems(tmp_path, config_text(pins.hash_pin("1", PEPPER))) == []
