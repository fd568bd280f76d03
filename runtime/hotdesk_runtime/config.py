"""Loading and checking the one TOML config file.

The file is decoded with :mod:`tomllib`, environment overrides are applied, and the
result is converted into :class:`hotdesk_contracts.directory.Config` with msgspec
(unknown keys are refused). Every problem is reported as a :class:`Problem` naming the
key path (``desks[2].mac``), where it came from (a line of the file or an environment
variable) and what is wrong, so an admin can fix the file without reading code.

Environment overrides (for containers): ``HOTDESK_<SECTION>__<KEY>=value`` sets
``[section] key``; each ``__`` goes one level down and a number selects a list item
(``HOTDESK_DESKS__0__SIP_PASSWORD``). A top-level key is ``HOTDESK_<KEY>``
(``HOTDESK_PROMPTS_DIR``). Values are read as TOML values where they parse
(``5070``, ``true``, ``["112", "911"]``), else as plain strings; a key whose type is
a string always takes the raw text.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import argon2
import msgspec

from hotdesk_contracts import directory as schema
from hotdesk_contracts.dialplan import dial_code_problems
from hotdesk_contracts.directory import Config

from . import pins

ENV_PREFIX = "HOTDESK_"
CONFIG_ENV = "HOTDESK_CONFIG"
"""The variable naming the config file when ``--config`` is not given."""

# Variables of the CLI itself that share the prefix but are not config keys.
_NOT_CONFIG_KEYS = frozenset(
    {"HOTDESK_CONFIG", "HOTDESK_TOKEN", "HOTDESK_DATA_DIR", "HOTDESK_OWN_DIRECTORY"}
)

Severity = Literal["error", "warning"]
PathPart = str | int


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in a configuration."""

    key: str
    """The key path, e.g. ``desks[2].mac``; empty for the file as a whole."""
    message: str
    """What is wrong, with the fix where one is obvious."""
    line: int | None = None
    """Line in the config file, when the key was found there."""
    variable: str | None = None
    """The environment variable the value came from, if it came from one."""
    severity: Severity = "error"

    def where(self) -> str:
        """``line 12``, ``env HOTDESK_SIP__PORT`` or empty."""
        if self.variable:
            return f"environment variable {self.variable}"
        if self.line is not None:
            return f"line {self.line}"
        return ""

    def __str__(self) -> str:
        where = self.where()
        head = self.key or "config"
        if where:
            head = f"{head} ({where})"
        return f"{self.severity}: {head}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every error (and warning)."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        errors = [p for p in problems if p.severity == "error"]
        lines = "\n".join(f"  {p}" for p in problems)
        where = f" in {source}" if source else ""
        super().__init__(f"{len(errors)} configuration error(s){where}:\n{lines}")


@dataclass
class LoadedConfig:
    """A configuration that passed every check, with its warnings."""

    config: Config
    path: Path | None
    warnings: list[Problem] = field(default_factory=list)


# --- key paths ------------------------------------------------------------------------
def format_path(parts: typing.Sequence[PathPart]) -> str:
    """``("desks", 2, "mac")`` → ``desks[2].mac``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_PATH_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")


def parse_path(text: str) -> list[PathPart]:
    """``$.desks[2].mac`` or ``desks[2].mac`` → ``["desks", 2, "mac"]``."""
    text = text.removeprefix("$")
    if text and not text.startswith((".", "[")):
        text = "." + text
    parts: list[PathPart] = []
    for m in _PATH_TOKEN.finditer(text):
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    return parts


# --- line numbers -----------------------------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[|\[)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*")(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"))*)\s*="""
)


def _split_dotted(text: str) -> list[str]:
    return [p.strip().strip('"') for p in text.split(".")]


class LineIndex:
    """Where each key path is written in a TOML text (found by scanning the text).

    Handles ``[table]``, ``[[array.of.tables]]`` and dotted keys, which is how config
    files are written; a value inside an inline table or array resolves to the line of
    the key that holds it.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[PathPart, ...], int] = {}
        counts: dict[tuple[PathPart, ...], int] = {}
        arrays: set[tuple[str, ...]] = set()
        table: tuple[PathPart, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header and not _KEY.match(line):
                names = _split_dotted(header.group(2))
                resolved: list[PathPart] = []
                for i, name in enumerate(names):
                    resolved.append(name)
                    plain = tuple(n for n in resolved if isinstance(n, str))
                    last = i == len(names) - 1
                    if last and header.group(1) == "[[":
                        arrays.add(plain)
                        key = tuple(resolved)
                        counts[key] = counts.get(key, -1) + 1
                        resolved.append(counts[key])
                    elif plain in arrays:
                        resolved.append(counts.get(tuple(resolved), 0))
                table = tuple(resolved)
                self.lines.setdefault(table, number)
                if isinstance(table[-1], int):
                    self.lines.setdefault(table[:-1], number)
                continue
            key_match = _KEY.match(line)
            if key_match:
                path = table + tuple(_split_dotted(key_match.group(1)))
                self.lines.setdefault(path, number)

    def line_of(self, parts: typing.Sequence[PathPart]) -> int | None:
        """The line of ``parts`` or of its nearest written ancestor."""
        path = tuple(parts)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


# --- schema lookups ---------------------------------------------------------------------
def _pattern_descriptions() -> dict[str, str]:
    out: dict[str, str] = {}
    for alias in (schema.Ext, schema.DeskName, schema.Mac):
        for meta in typing.get_args(alias)[1:]:
            if isinstance(meta, msgspec.Meta) and meta.pattern and meta.description:
                out[meta.pattern] = meta.description
    return out


_PATTERNS = _pattern_descriptions()


def _type_at(parts: typing.Sequence[PathPart]) -> msgspec.inspect.Type | None:
    """The msgspec type of the value at ``parts`` in :class:`Config`, if it exists."""
    current: msgspec.inspect.Type = msgspec.inspect.type_info(Config)
    for part in parts:
        while isinstance(current, msgspec.inspect.UnionType):
            non_none = [t for t in current.types if not isinstance(t, msgspec.inspect.NoneType)]
            if len(non_none) != 1:
                return None
            current = non_none[0]
        if isinstance(current, msgspec.inspect.StructType) and isinstance(part, str):
            found = next((f for f in current.fields if f.name == part), None)
            if found is None:
                return None
            current = found.type
        elif isinstance(current, msgspec.inspect.ListType) and isinstance(part, int):
            current = current.item_type
        else:
            return None
    return current


def _field_names(parts: typing.Sequence[PathPart]) -> list[str]:
    info = _type_at(parts)
    if isinstance(info, msgspec.inspect.StructType):
        return [f.name for f in info.fields]
    return []


def _expects_str(parts: typing.Sequence[PathPart]) -> bool:
    info = _type_at(parts)
    if isinstance(info, msgspec.inspect.UnionType):
        return any(isinstance(t, msgspec.inspect.StrType) for t in info.types)
    return isinstance(info, msgspec.inspect.StrType)


# --- environment overrides ----------------------------------------------------------------
def _env_value(raw: str, parts: typing.Sequence[PathPart]) -> Any:
    if _expects_str(parts):
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env(
    data: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[tuple[PathPart, ...], str], list[Problem]]:
    """Apply ``HOTDESK_*`` overrides to ``data`` in place.

    Returns which key path came from which variable, and the problems with variables
    that name no key or a list item that does not exist.
    """
    sources: dict[tuple[PathPart, ...], str] = {}
    problems: list[Problem] = []
    top_level = set(_field_names(()))
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX) or variable in _NOT_CONFIG_KEYS:
            continue
        raw_parts = variable[len(ENV_PREFIX) :].lower().split("__")
        if len(raw_parts) == 1 and raw_parts[0] not in top_level:
            # Single-level names that are no config key belong to other tools.
            continue
        parts: list[PathPart] = [int(p) if p.isdigit() else p for p in raw_parts]
        key = format_path(parts)
        if any(p == "" for p in raw_parts):
            problems.append(Problem(key, "empty key part (use exactly two '_')", variable=variable))
            continue
        parent_names = _field_names(parts[:-1]) if len(parts) > 1 else sorted(top_level)
        last = parts[-1]
        if isinstance(last, str) and last not in parent_names:
            problems.append(Problem(key, _unknown_key_message(last, parent_names), None, variable))
            continue
        target: Any = data
        ok = True
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(part, int):
                if not isinstance(target, list) or part >= len(target):
                    problems.append(
                        Problem(
                            format_path(parts[: i + 1]),
                            "no such list item in the config file to override",
                            variable=variable,
                        )
                    )
                    ok = False
                    break
                target = target[part]
            else:
                if not isinstance(target, dict):
                    ok = False
                    break
                target = target.setdefault(part, [] if isinstance(nxt, int) else {})
        if not ok:
            continue
        value = _env_value(env[variable], parts)
        if isinstance(last, int):
            if not isinstance(target, list) or last >= len(target):
                problems.append(
                    Problem(key, "no such list item in the config file", variable=variable)
                )
                continue
            target[last] = value
        elif isinstance(target, dict):
            target[last] = value
        else:
            problems.append(Problem(key, "cannot override inside a non-table", variable=variable))
            continue
        sources[tuple(parts)] = variable
    return sources, problems


def _unknown_key_message(name: str, candidates: typing.Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key '{name}'{hint}"


# --- structural decoding ----------------------------------------------------------------
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]*)`")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]*)`")
_REGEX = re.compile(r"Expected `str` matching regex '(?P<pattern>.*)'")
_EXPECTED = re.compile(r"Expected `(?P<want>[^`]*)`, got `(?P<got>[^`]*)`")

_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "a string (in quotes)",
    "bool": "true or false",
    "array": "a list ([...])",
    "object": "a table",
    "int | null": "a whole number",
    "str | null": "a string (in quotes)",
}


def _friendly(message: str) -> str:
    if m := _REGEX.match(message):
        pattern = m.group("pattern")
        return "expected " + _PATTERNS.get(pattern, f"text matching {pattern}")
    if m := _EXPECTED.match(message):
        want = _TYPE_WORDS.get(m.group("want"), m.group("want"))
        got = _TYPE_WORDS.get(m.group("got"), m.group("got"))
        return f"expected {want}, got {got}"
    if message.startswith("Invalid enum value"):
        return message.replace("Invalid enum value", "not one of the allowed values:")
    return message[0].lower() + message[1:] if message else message


def _remove(data: Any, parts: typing.Sequence[PathPart]) -> bool:
    """Drop the value at ``parts`` so decoding can go on and find the next problem.

    A bad list element drops its whole list (the key falls back to its default): only
    the first bad element of a list is reported, but indices stay true to the file.
    """
    while parts and isinstance(parts[-1], int):
        parts = parts[:-1]
    if not parts:
        return False
    target = data
    for part in parts[:-1]:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            return False
    last = parts[-1]
    if isinstance(target, dict) and last in target:
        del target[last]
        return True
    return False


def _decode_fragment(
    value: Any, kind: type[Any], prefix: list[PathPart], problems: list[tuple[list[PathPart], str]]
) -> None:
    """Convert one top-level value or list item, recording each problem under ``prefix``."""
    work = {"v": value}
    for _ in range(100):
        try:
            msgspec.convert(work["v"], kind)
            return
        except msgspec.ValidationError as exc:
            m = _AT.match(str(exc))
            assert m is not None
            message = m.group("msg")
            parts: list[PathPart] = parse_path(m.group("path") or "")
            if um := _UNKNOWN.match(message):
                name = um.group("name")
                problems.append(
                    (
                        [*prefix, *parts, name],
                        _unknown_key_message(name, _field_names([*prefix, *parts])),
                    )
                )
                drop = [*parts, name]
            elif mm := _MISSING.match(message):
                name = mm.group("name")
                missing = [*prefix, *parts, name]
                # A bad required value was dropped above: it is reported already.
                if not any(reported == missing for reported, _ in problems):
                    problems.append((missing, f"missing required key '{name}'"))
                drop = parts
            else:
                problems.append(([*prefix, *parts], _friendly(message)))
                drop = parts
            if not drop or not _remove(work, ["v", *drop]):
                return


def decode(
    data: dict[str, Any],
    lines: LineIndex | None = None,
    env_sources: Mapping[tuple[PathPart, ...], str] | None = None,
) -> tuple[Config | None, list[Problem]]:
    """Convert ``data`` into a :class:`Config`, collecting every structural problem.

    msgspec stops at the first problem, so each top-level key and each item of a list
    of tables is converted on its own, dropping what is wrong and going on, so one run
    reports every problem with indices true to the file.
    """
    env_sources = env_sources or {}
    found: list[tuple[list[PathPart], str]] = []
    config_type = msgspec.inspect.type_info(Config)
    assert isinstance(config_type, msgspec.inspect.StructType)
    fields = {f.name: f for f in config_type.fields}
    hints = typing.get_type_hints(Config, include_extras=True)
    for key, value in data.items():
        if key not in fields:
            found.append(([key], _unknown_key_message(key, list(fields))))
            continue
        info = fields[key].type
        if (
            isinstance(info, msgspec.inspect.ListType)
            and isinstance(info.item_type, msgspec.inspect.StructType)
            and isinstance(value, list)
        ):
            for i, item in enumerate(value):
                _decode_fragment(item, info.item_type.cls, [key, i], found)
        else:
            _decode_fragment(value, hints[key], [key], found)
    problems = [_locate(parts, text, lines, env_sources) for parts, text in found]
    if problems:
        return None, problems
    try:
        return msgspec.convert(data, Config), []
    except msgspec.ValidationError as exc:
        return None, [Problem("", _friendly(str(exc)))]


def _locate(
    parts: typing.Sequence[PathPart],
    message: str,
    lines: LineIndex | None,
    env_sources: Mapping[tuple[PathPart, ...], str],
    severity: Severity = "error",
) -> Problem:
    path = tuple(parts)
    probe = path
    while probe:
        if probe in env_sources:
            return Problem(
                format_path(parts), message, variable=env_sources[probe], severity=severity
            )
        probe = probe[:-1]
    line = lines.line_of(parts) if lines is not None else None
    return Problem(format_path(parts), message, line=line, severity=severity)


# --- cross-field validation -----------------------------------------------------------
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
CUSTOM_TEMPLATE_MESSAGE = (
    "desks in hot-desking mode use the standard templates only; remove template or take "
    "the phone out of hot-desking"
)


def is_argon2_hash(value: str) -> bool:
    """Whether ``value`` is an encoded argon2 hash (``$argon2id$v=19$…``)."""
    try:
        argon2.extract_parameters(value)
    except (argon2.exceptions.InvalidHashError, ValueError):
        return False
    return True


def _pin_pepper_problems(config: Config) -> list[Problem]:
    """The pepper against the PIN hashes: a hash made with another pepper can never be
    checked (error); plain hashes beside a pepper are searchable offline (warning).

    Without a pepper, peppered hashes are not an error here: only the IVR and
    ``hotdesk hash-pin`` are given the pepper, and every service reads the same file.
    """
    pepper = config.pins.pepper
    out: list[Problem] = []
    problem = pins.pepper_problem(pepper)
    if problem:
        out.append(Problem("pins.pepper", problem))
        return out
    if not pepper:
        return out
    mine = pins.fingerprint(pepper)
    plain = 0
    for i, ext in enumerate(config.extensions):
        if not ext.pin_hash or not pins.is_pin_hash(ext.pin_hash):
            continue
        fp, _ = pins.split_pin_hash(ext.pin_hash)
        if fp is None:
            plain += 1
        elif fp != mine:
            out.append(
                Problem(
                    f"extensions[{i}].pin_hash",
                    f"made with pepper {fp}, but pins.pepper is {mine}: this PIN can never be "
                    "checked; set the pepper it was made with or hash the PIN again",
                )
            )
    if plain:
        out.append(
            Problem(
                "extensions",
                f"{plain} PIN hash(es) made without the pepper: a copy of the directory lets "
                "anyone search them offline; hash those PINs again with `hotdesk hash-pin`",
                severity="warning",
            )
        )
    return out


def validate(config: Config) -> list[Problem]:
    """Every cross-field problem in ``config`` (errors and warnings), without lines."""
    out: list[Problem] = []

    def err(key: str, message: str) -> None:
        out.append(Problem(key, message))

    numbers: dict[str, int] = {}
    for i, ext in enumerate(config.extensions):
        if ext.number in numbers:
            err(
                f"extensions[{i}].number",
                f"extension {ext.number} is defined twice (also extensions[{numbers[ext.number]}])",
            )
        else:
            numbers[ext.number] = i
        if ext.pin_hash and not pins.is_pin_hash(ext.pin_hash):
            err(
                f"extensions[{i}].pin_hash",
                "not an argon2 hash: never put a PIN in clear; make one with `hotdesk hash-pin`",
            )
    out.extend(_pin_pepper_problems(config))
    for i, ext in enumerate(config.extensions):
        for j, target in enumerate(ext.blf):
            if target not in numbers:
                err(f"extensions[{i}].blf[{j}]", f"BLF entry names unknown extension {target}")

    names: dict[str, int] = {}
    macs: dict[str, int] = {}
    for i, desk in enumerate(config.desks):
        if desk.name in names:
            err(
                f"desks[{i}].name",
                f"desk {desk.name} is defined twice (also desks[{names[desk.name]}])",
            )
        else:
            names[desk.name] = i
        mac = desk.mac.lower()
        if mac in macs:
            err(f"desks[{i}].mac", f"MAC {desk.mac} is used twice (also desks[{macs[mac]}])")
        else:
            macs[mac] = i
        if desk.template:
            err(f"desks[{i}].template", CUSTOM_TEMPLATE_MESSAGE)
        if desk.name in numbers:
            err(f"desks[{i}].name", f"{desk.name} is also an extension number")
        if desk.policy.daily_logout and not _HHMM.match(desk.policy.daily_logout):
            err(
                f"desks[{i}].policy.daily_logout",
                f"{desk.policy.daily_logout!r} is not a time: expected HH:MM (24-hour), e.g. 19:00",
            )

    for key, message in dial_code_problems(config.directory()):
        err(key, message)

    if not any(t.emergency for t in config.trunks):
        out.append(
            Problem(
                "trunks",
                "NO EMERGENCY TRUNK CONFIGURED: idle desks can dial "
                f"{', '.join(config.emergency_numbers) or 'no emergency number'} but the "
                "calls will fail; add a [[trunks]] entry with emergency = true",
                severity="warning",
            )
        )
    for i, admin in enumerate(config.admins):
        if not is_argon2_hash(admin.password_hash):
            err(
                f"admins[{i}].password_hash",
                "not an argon2 hash: never put a password in clear; make one with "
                "`hotdesk hash-pin`",
            )

    policies = config.policies
    try:
        zoneinfo.ZoneInfo(policies.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        err("policies.timezone", f"unknown time zone {policies.timezone!r} (e.g. Europe/Berlin)")
    if policies.daily_logout and not _HHMM.match(policies.daily_logout):
        err(
            "policies.daily_logout",
            f"{policies.daily_logout!r} is not a time: expected HH:MM (24-hour), e.g. 19:00",
        )

    sip = config.sip
    if len(set(sip.digest_algorithms)) != len(sip.digest_algorithms):
        err(
            "sip.digest_algorithms",
            f"an algorithm is listed twice: {sip.digest_algorithms}; list each once, "
            'the preferred first (e.g. ["SHA-256", "MD5"])',
        )
    if sip.rtp_port_min > sip.rtp_port_max:
        err(
            "sip.rtp_port_min",
            f"RTP port range is inverted: rtp_port_min {sip.rtp_port_min} > "
            f"rtp_port_max {sip.rtp_port_max}",
        )
    ports: list[tuple[str, int]] = [
        ("sip.port", sip.port),
        ("admin.port", config.admin.port),
        ("provisioning.port", config.provisioning.port),
    ]
    if sip.tls_cert:
        ports.append(("sip.tls_port", sip.tls_port))
    if not config.nats.url:
        ports.append(("nats.embedded_port", config.nats.embedded_port))
    if config.telemetry.prometheus_port:
        ports.append(("telemetry.prometheus_port", config.telemetry.prometheus_port))
    if config.telemetry.health_port:
        ports.append(("telemetry.health_port", config.telemetry.health_port))
    seen: dict[int, str] = {}
    for key, port in ports:
        if not 0 < port < 65536:
            err(key, f"port {port} is out of range (1-65535)")
        elif port in seen:
            err(key, f"port {port} is also used by {seen[port]}")
        else:
            seen[port] = key
        if key != "sip.port" and sip.rtp_port_min <= port <= sip.rtp_port_max:
            err(
                key, f"port {port} lies in the RTP port range {sip.rtp_port_min}-{sip.rtp_port_max}"
            )
    return out


# --- the entry points -----------------------------------------------------------------
def config_path(explicit: str | Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """The config file to load: ``--config``, else ``HOTDESK_CONFIG``, else none."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    value = env.get(CONFIG_ENV, "")
    return Path(value) if value else None


def check_data(
    data: dict[str, Any], text: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[Config | None, list[Problem]]:
    """Apply overrides, decode and validate ``data``; return the config and all problems."""
    env = os.environ if env is None else env
    lines = LineIndex(text) if text is not None else None
    sources, problems = apply_env(data, env)
    config, structural = decode(data, lines, sources)
    problems += structural
    if config is None or structural:
        return None, problems
    for p in validate(config):
        problems.append(_locate(parse_path(p.key), p.message, lines, sources, p.severity))
    return config, problems


def check_file(
    path: Path, env: Mapping[str, str] | None = None
) -> tuple[Config | None, list[Problem]]:
    """Read, decode and validate one TOML file; never raises for a bad file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem("", f"config file {path} not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem("", f"cannot read config file {path}: {exc}")]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        return None, [Problem("", f"not valid TOML: {exc}", line=line)]
    return check_data(data, text, env)


def _toml_error_line(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    default: Config | None = None,
) -> LoadedConfig:
    """Load the configuration or raise :class:`ConfigError` listing every error.

    ``path`` falls back to ``HOTDESK_CONFIG``; with neither, ``default`` (e.g. the demo
    directory) is used, still with environment overrides applied.
    """
    env = os.environ if env is None else env
    resolved = config_path(path, env)
    if resolved is not None:
        config, problems = check_file(resolved, env)
        source = str(resolved)
    elif default is not None:
        config, problems = check_data(msgspec.to_builtins(default), None, env)
        source = "the built-in demo configuration"
    else:
        raise ConfigError([Problem("", f"no config file: pass --config or set {CONFIG_ENV}")], "")
    errors = [p for p in problems if p.severity == "error"]
    if errors or config is None:
        raise ConfigError(problems, source)
    return LoadedConfig(config, resolved, [p for p in problems if p.severity == "warning"])


# --- secrets ------------------------------------------------------------------------------
_hasher = argon2.PasswordHasher()


def hash_secret(secret: str) -> str:
    """The argon2id hash of an admin password, for the config file, with argon2-cffi's
    default parameters (RFC 9106's low-memory choice). PINs are hashed by
    :func:`hotdesk_runtime.pins.hash_pin`."""
    if not secret:
        raise ValueError("cannot hash an empty secret")
    return _hasher.hash(secret)


def verify_secret(encoded_hash: str, secret: str) -> bool:
    """Whether ``secret`` matches ``encoded_hash`` (False for a malformed hash)."""
    try:
        return _hasher.verify(encoded_hash, secret)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False
