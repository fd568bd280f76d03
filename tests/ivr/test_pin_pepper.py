"""The IVR checks peppered PIN hashes with ``pins.pepper``, keeps checking the plain
argon2 hashes of older releases, and never counts a hash it cannot check as a wrong PIN."""

from __future__ import annotations

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Config, Extension, PinSettings
from hotdesk_contracts.events import LoggedIn
from hotdesk_ivr import main as ivr_main
from hotdesk_runtime import pins
from hotdesk_sip_edge.media.ivr_bridge import IvrCommandRouter
from tests.ivr.test_service import (
    PIN,
    call,
    config,
    ivr,
    ledger_events,
    router,
    run_ivr,
    wait_ivr_ready,
)

__all__ = ["ivr", "router"]  # fixtures used here by name

PEPPER = "a-test-pepper-of-some-length"


def peppered_config(pin_hash: str, pepper: str) -> Config:
    base = config()
    first, *rest = base.extensions
    return msgspec.structs.replace(
        base,
        extensions=[Extension(number=first.number, name=first.name, pin_hash=pin_hash), *rest],
        pins=PinSettings(pepper=pepper),
    )


async def test_a_peppered_pin_logs_in_with_the_configured_pepper(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    await run_ivr(nc, js, peppered_config(pins.hash_pin(PIN, PEPPER), PEPPER), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*100*")
    await phone.hear("en/enter-pin")
    await phone.press(PIN + "#")
    await phone.hung_up()
    assert phone.heard == ["en/enter-pin", "en/logged-in"]
    events = await ledger_events(js, subjects.desk_ledger("HD0001"))
    assert [(type(e), e.user) for e in events] == [(LoggedIn, "100")]


async def test_a_hash_made_with_another_pepper_is_an_error_not_a_wrong_pin(
    nc: Client, js: JetStreamContext, router: IvrCommandRouter, ivr: None
) -> None:
    other = pins.hash_pin(PIN, "another-pepper-of-some-length")
    await run_ivr(nc, js, peppered_config(other, PEPPER), "ivr-1")
    await wait_ivr_ready(nc)
    phone = await call(nc, router, "*77*100*")
    await phone.hear("en/enter-pin")
    await phone.press(PIN + "#")
    await phone.hung_up()
    assert phone.heard == ["en/enter-pin", "en/error"]
    assert await ledger_events(js, subjects.user_ledger("100")) == []  # no PIN failure
    assert await ledger_events(js, subjects.desk_ledger("HD0001")) == []


def test_the_checker_checks_old_plain_hashes_beside_a_pepper() -> None:
    # config()'s hashes are argon2-cffi's defaults, as releases before the pepper made.
    old = config().extensions[0].pin_hash
    assert not old.startswith(pins.PEPPERED_PREFIX)
    assert ivr_main.verify_pin(PIN, old, PEPPER)
    assert not ivr_main.verify_pin("0000", old, PEPPER)
    assert not ivr_main.verify_pin(PIN, "", PEPPER)  # the dummy, peppered, never matches


def test_uncheckable_pins_names_hashes_of_another_or_no_pepper() -> None:
    cfg = peppered_config(pins.hash_pin(PIN, "another-pepper-of-some-length"), PEPPER)
    assert ivr_main.uncheckable_pins(cfg.directory(), PEPPER) == ["100"]
    assert ivr_main.uncheckable_pins(cfg.directory(), "") == ["100"]
    assert ivr_main.uncheckable_pins(config().directory(), PEPPER) == []
