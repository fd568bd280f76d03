"""Classifying dialled strings with the directory's dial-code table. Pure.

The edge classifies every dialled string here first; ``hotdesk check-config`` uses
:func:`dial_code_problems` to refuse a table that would make a string ambiguous.
"""

from __future__ import annotations

import re

import msgspec

from .directory import Directory


class Login(msgspec.Struct, frozen=True):
    """``*77*<ext>*``: log in (or roam) as ``ext``."""

    ext: str


class Logout(msgspec.Struct, frozen=True):
    """``*77*5*``."""


class Emergency(msgspec.Struct, frozen=True):
    number: str


class Internal(msgspec.Struct, frozen=True):
    ext: str


class DeskCall(msgspec.Struct, frozen=True):
    """A call to a desk name (``HD0001``), e.g. from an admin's phone."""

    desk: str


class Feature(msgspec.Struct, frozen=True):
    """Another PBX code from ``dial_codes.other``."""

    code: str
    name: str


class External(msgspec.Struct, frozen=True):
    number: str


class Conflict(msgspec.Struct, frozen=True):
    """The string matches more than one code: refuse it (403) and name them."""

    codes: list[str]


class Invalid(msgspec.Struct, frozen=True):
    """Not something that can be dialled (letters, an incomplete hot-desk code, …)."""

    why: str


Classification = (
    Login | Logout | Emergency | Internal | DeskCall | Feature | External | Conflict | Invalid
)

_NUMBER = re.compile(r"^\+?[0-9*#]+$")


def _login_match(dialled: str, login: str) -> str | None:
    if dialled.startswith(login) and dialled.endswith("*") and len(dialled) > len(login) + 1:
        ext = dialled[len(login) : -1]
        if ext.isdigit():
            return ext
    return None


def classify(dialled: str, directory: Directory) -> Classification:
    """What a dialled string (the Request-URI user part) means to this PBX."""
    codes = directory.dial_codes
    # Emergency numbers come first, always: no dial code may ever stand between a
    # caller and 112/911 (check-config also refuses codes that overlap them).
    if dialled in directory.emergency_numbers:
        return Emergency(dialled)
    matches: list[str] = []
    result: Classification | None = None
    if dialled == codes.logout:
        matches.append(codes.logout)
        result = Logout()
    ext = _login_match(dialled, codes.login)
    # The logout code looks like a login to extension 5; it wins only when 5 is no
    # extension (check-config refuses that collision).
    if ext is not None and not (dialled == codes.logout and directory.extension(ext) is None):
        matches.append(codes.login + "<ext>*")
        result = Login(ext)
    for other in codes.other:
        if dialled.startswith(other.code):
            matches.append(other.code)
            result = Feature(other.code, other.name)
    if len(matches) > 1:
        return Conflict(matches)
    if result is not None:
        return result
    if dialled.startswith(codes.hotdesk_prefix):
        return Invalid(f"{dialled!r} starts with the hot-desk prefix but is no hot-desk code")
    if directory.extension(dialled) is not None:
        return Internal(dialled)
    if directory.desk(dialled) is not None:
        return DeskCall(dialled)
    if _NUMBER.fullmatch(dialled):
        return External(dialled)
    return Invalid(f"{dialled!r} is not a number")


def dial_code_problems(directory: Directory) -> list[tuple[str, str]]:
    """Every problem in the dial-code table, as (config key, explanation with the fix)."""
    codes = directory.dial_codes
    problems: list[tuple[str, str]] = []
    if not codes.login.startswith(codes.hotdesk_prefix):
        problems.append(
            (
                "dial_codes.login",
                f"{codes.login!r} must start with the hot-desk prefix {codes.hotdesk_prefix!r}",
            )
        )
    if _login_match(codes.logout, codes.login) is not None:
        ext = _login_match(codes.logout, codes.login)
        if ext is not None and directory.extension(ext) is not None:
            problems.append(
                (
                    "dial_codes.logout",
                    f"{codes.logout!r} is also the login code for extension "
                    f"{ext}: renumber extension {ext} or choose another logout code",
                )
            )
    seen: dict[str, int] = {}
    for i, other in enumerate(codes.other):
        key = f"dial_codes.other[{i}].code"
        if not other.code:
            problems.append((key, "a dial code may not be empty"))
            continue
        if other.code.startswith(codes.hotdesk_prefix) or codes.hotdesk_prefix.startswith(
            other.code
        ):
            problems.append(
                (
                    key,
                    f"{other.code!r} ({other.name}) clashes with the hot-desk prefix "
                    f"{codes.hotdesk_prefix!r}: no other dial code may start with "
                    f"{codes.hotdesk_prefix!r}; move it (e.g. to *8…) so *77*<ext>* works",
                )
            )
        if other.code in seen:
            problems.append(
                (
                    key,
                    f"{other.code!r} is defined twice (also dial_codes.other[{seen[other.code]}])",
                )
            )
        else:
            for prev, j in seen.items():
                if prev.startswith(other.code) or other.code.startswith(prev):
                    problems.append(
                        (
                            key,
                            f"{other.code!r} ({other.name}) and {prev!r} "
                            f"(dial_codes.other[{j}]) are ambiguous: one is a prefix of the other",
                        )
                    )
            seen[other.code] = i
        for emergency in directory.emergency_numbers:
            if emergency.startswith(other.code) or other.code.startswith(emergency):
                problems.append(
                    (
                        key,
                        f"{other.code!r} ({other.name}) overlaps the emergency number "
                        f"{emergency!r}: one is a prefix of the other, so a caller dialling "
                        f"{emergency} could reach {other.name}; choose a code that neither "
                        f"starts {emergency!r} nor is started by it (e.g. *8…)",
                    )
                )
        for n, extension in enumerate(directory.extensions):
            if extension.number.startswith(other.code):
                problems.append(
                    (
                        f"extensions[{n}].number",
                        f"extension {extension.number} starts with "
                        f"dial code {other.code!r} ({other.name})",
                    )
                )
    for n, extension in enumerate(directory.extensions):
        if extension.number in directory.emergency_numbers:
            problems.append(
                (f"extensions[{n}].number", f"extension {extension.number} is an emergency number")
            )
    return problems
