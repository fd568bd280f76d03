"""The directory and settings schema: what one TOML config file holds.

Pure data: loading, environment overrides and validation with line numbers live in
``hotdesk_runtime.config``; the cross-field checks (dial-code conflicts, custom
templates on hot desks, …) live in :mod:`.dialplan` and ``hotdesk_runtime``.

Secrets: ``sip_password`` and provisioning passwords are needed in clear by the SIP
digest and HTTP digest algorithms; PINs and admin passwords are stored only as argon2
hashes (``pin_hash``, ``password_hash``), never in clear.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Ext = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{2,8}$", description="an extension number")]
DeskName = Annotated[
    str, msgspec.Meta(pattern=r"^HD[0-9]{4,6}$", description="a desk name like HD0001")
]
Mac = Annotated[
    str,
    msgspec.Meta(pattern=r"^[0-9a-fA-F]{12}$", description="12 hex digits, no separators"),
]


class _Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class Extension(_Config, frozen=True):
    """A user: an extension with a voicemail PIN that logs in at desks."""

    number: Ext
    name: str
    sip_password: str = ""
    """For the user's own phone or softphone, if any; never given to a desk phone."""
    pin_hash: str = ""
    """argon2 hash of the voicemail PIN, peppered with ``pins.pepper`` when one is set
    (``hotdesk hash-pin`` makes it). Empty: the extension cannot log in at a desk."""
    blf: list[Ext] = []
    """Extensions whose lamps this user wants on their keys, in key order."""
    language: str = "en"
    template: str = ""
    """A custom provisioning template, for the user's own (non hot-desk) phone only."""


class DeskPolicy(_Config, frozen=True):
    """Per-desk overrides of the global auto-logout policies (``None`` = inherit)."""

    idle_logout_minutes: int | None = None
    max_login_minutes: int | None = None
    daily_logout: str | None = None


class Desk(_Config, frozen=True):
    """A shared phone in hot-desking mode, registered under its own desk name."""

    name: DeskName
    mac: Mac
    sip_password: str
    provisioning_user: str = ""
    """HTTP user for the provisioning server; defaults to the desk name."""
    provisioning_password: str = ""
    """HTTP password for the provisioning server; defaults to ``sip_password``."""
    vendor: str = ""
    """``yealink``, ``poly``, ``snom``, ``grandstream``, ``fanvil``, ``cisco``; empty:
    detected from the phone's first request."""
    model: str = ""
    template: str = ""
    """Must stay empty: hot desks use the standard templates only."""
    policy: DeskPolicy = DeskPolicy()


class OtherCode(_Config, frozen=True):
    """A dial code of the PBX besides the hot-desk ones (pickup, voicemail, …)."""

    code: str
    name: str


class DialCodes(_Config, frozen=True):
    hotdesk_prefix: str = "*7"
    """No other code may start with this (the product note's ``*7`` rule)."""
    login: str = "*77*"
    """Followed by the extension and ``*``: ``*77*100*``."""
    logout: str = "*77*5*"
    other: list[OtherCode] = []


class Trunk(_Config, frozen=True):
    name: str
    uri: str
    """Where calls go, e.g. ``sip:gateway.example.net:5060;transport=udp``."""
    emergency: bool = False
    """Used for emergency numbers (the first emergency trunk wins)."""


class Policies(_Config, frozen=True):
    exclusive: bool = True
    """A user sits at one desk at a time; a login elsewhere logs them out here."""
    pin_max_failures: int = 5
    pin_window_seconds: int = 900
    pin_lockout_seconds: int = 900
    pin_tries_per_call: int = 3
    pin_digit_timeout_seconds: float = 8.0
    announce_unknown_extension: bool = True
    """A login to an extension that does not exist (or has no PIN) hears "That extension
    is not known" and the call ends, as on any PBX (extensions are no secret there).
    ``false``: the caller is asked for a PIN like anyone else and hears "wrong PIN", so
    nothing a caller hears tells which extensions exist."""
    idle_logout_minutes: int = 0
    """0 disables."""
    max_login_minutes: int = 0
    """0 disables."""
    daily_logout: str = ""
    """``HH:MM`` in ``timezone``; empty disables."""
    timezone: str = "UTC"


class AdminUser(_Config, frozen=True):
    username: str
    password_hash: str
    role: Literal["admin", "viewer"] = "viewer"


class ApiToken(_Config, frozen=True):
    name: str
    token_hash: str
    """SHA-256 hex of the token (tokens are long random strings, not passwords)."""
    role: Literal["admin", "viewer"] = "viewer"


class Webhook(_Config, frozen=True):
    name: str
    url: str
    secret: str
    """Key for the ``X-Hotdesk-Signature`` HMAC-SHA256 header."""
    events: list[str] = []
    """Event types to send; empty sends every ledger event."""


class Directory(_Config, frozen=True):
    """Everything about people, desks and numbers: reloadable without a restart."""

    extensions: list[Extension] = []
    desks: list[Desk] = []
    dial_codes: DialCodes = DialCodes()
    emergency_numbers: list[str] = msgspec.field(default_factory=lambda: ["112", "911"])
    trunks: list[Trunk] = []
    admins: list[AdminUser] = []
    api_tokens: list[ApiToken] = []
    webhooks: list[Webhook] = []
    policies: Policies = Policies()

    def extension(self, number: str) -> Extension | None:
        for ext in self.extensions:
            if ext.number == number:
                return ext
        return None

    def desk(self, name: str) -> Desk | None:
        for desk in self.desks:
            if desk.name == name:
                return desk
        return None

    def desk_by_mac(self, mac: str) -> Desk | None:
        mac = mac.lower()
        for desk in self.desks:
            if desk.mac.lower() == mac:
                return desk
        return None


# --- service settings (not reloaded: a restart applies them) ---------------------------
class NatsSettings(_Config, frozen=True):
    url: str = ""
    """The server (``nats://host:4222``), or a cluster's nodes comma-separated. Empty:
    run an embedded nats-server with JetStream under ``data_dir``."""
    data_dir: str = "var/nats"
    credentials: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    replicas: int = 1
    embedded_port: int = 4222


class SipSettings(_Config, frozen=True):
    listen: str = "0.0.0.0"
    port: int = 5060
    tls_port: int = 5061
    tls_cert: str = ""
    tls_key: str = ""
    advertised_host: str = "127.0.0.1"
    """The address phones reach the edge at (Via, Record-Route, Contact, SDP)."""
    realm: str = "hotdesk"
    digest_algorithms: Annotated[
        list[Literal["SHA-256", "MD5"]], msgspec.Meta(min_length=1, max_length=2)
    ] = msgspec.field(default_factory=lambda: ["MD5"])
    """Digest algorithms the edge offers, the preferred first, one challenge each (RFC
    8760). ``["SHA-256", "MD5"]`` lets clients that implement RFC 8760 use SHA-256, but
    clients that do not may fail to register as soon as a SHA-256 challenge is present
    (Debian 12's baresip 1.0 in any order, SIPp 3.6 when it comes first); MD5 alone is
    what every phone answers."""
    nonce_lifetime_seconds: int = 300
    min_expires: int = 60
    max_expires: int = 3600
    max_message_bytes: int = 65535
    rate_limit_per_second: float = 200.0
    rate_limit_burst: int = 400
    auth_fail_limit: int = 10
    auth_fail_window_seconds: int = 60
    auth_block_seconds: int = 300
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    media_timeout_seconds: float = 30.0
    drain_seconds: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    """On SIGTERM the edge answers new calls 503 and waits up to this long for the IVR
    calls in progress to end (the IVR waits as long for the calls it drives) before it
    hangs up what is left. Keep it below the orchestrator's grace period."""
    logout_key_uri: str = ""
    """If a phone's logout key dials a distinct URI, name it here so the reason is
    recorded as ``user_key``."""


class HttpSettings(_Config, frozen=True):
    listen: str = "0.0.0.0"
    port: int = 8080
    tls_cert: str = ""
    tls_key: str = ""
    trusted_proxies: list[str] = []
    """Addresses whose ``X-Forwarded-For`` is believed."""


class ProvisioningSettings(_Config, frozen=True):
    listen: str = "0.0.0.0"
    port: int = 8081
    tls_cert: str = ""
    tls_key: str = ""
    trusted_proxies: list[str] = []
    auth: Literal["digest", "basic"] = "digest"
    rate_limit_per_minute: int = 120
    retries: int = 3
    retry_backoff_seconds: float = 5.0
    stage_timeout_seconds: float = 30.0
    allow_legacy_digest: bool = False
    """Accept RFC 2069 Digest answers without ``qop`` (no nonce count, so no replay
    protection); only for old firmware that cannot answer ``qop=auth``."""


class TelemetrySettings(_Config, frozen=True):
    otlp_endpoint: str = ""
    """OTLP/HTTP endpoint (``http://collector:4318``); empty disables export."""
    prometheus_port: int = 0
    """0: metrics are served on each HTTP service's ``/metrics`` only."""
    health_port: int = 0
    """HTTP port for ``/healthz``, ``/readyz`` and ``/metrics`` of one service process;
    0: none (``hotdesk up`` runs every service on one host). Containers set 9090."""
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"


class PinSettings(_Config, frozen=True):
    pepper: str = ""
    """Secret key mixed into every PIN hash (HMAC-SHA256 before argon2), so a copy of
    the directory alone cannot be searched for PINs. Give it to the IVR and to
    ``hotdesk hash-pin`` only, best as ``HOTDESK_PINS__PEPPER``; at least 16 characters.
    Empty: PIN hashes are argon2 alone."""


class Config(Directory, frozen=True):
    """One config file: the directory at top level, plus the service settings sections
    (``[nats]``, ``[sip]``, ``[admin]``, ``[provisioning]``, ``[telemetry]``,
    ``[pins]``)."""

    nats: NatsSettings = NatsSettings()
    sip: SipSettings = SipSettings()
    admin: HttpSettings = HttpSettings()
    provisioning: ProvisioningSettings = ProvisioningSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    pins: PinSettings = PinSettings()
    prompts_dir: str = ""
    """Extra prompt sets on disk; the bundled English set is always there."""

    def directory(self) -> Directory:
        """The reloadable part, as the services share it through the directory bucket."""
        return Directory(**{f: getattr(self, f) for f in Directory.__struct_fields__})
