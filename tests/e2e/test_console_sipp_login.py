"""The admin console in a real Chromium watches a login made by a SIPp desk through the
edge and the IVR arrive live, and logs the user out remotely."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from playwright.async_api import Dialog, async_playwright, expect

from hotdesk_contracts.directory import AdminUser, Config
from hotdesk_contracts.events import LoggedIn, LoggedOut
from tests.e2e.system import PINS, PRESENCE, pin_hash, running_system, sipp_desk_call
from tests.presence.console import CHROMIUM, CHROMIUM_ARGS
from tests.sip_edge.media.rtp_peer import RtpPeer

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "console-e2e-pass"


def with_admin(cfg: Config) -> Config:
    """An admin account for the console."""
    admin = AdminUser(username="alice", password_hash=pin_hash(ADMIN_PASSWORD), role="admin")
    return msgspec.structs.replace(cfg, admins=[admin])


async def test_console_shows_a_sipp_login_live_and_the_admin_logs_the_user_out(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    listener = await RtpPeer().start()
    try:
        async with (
            running_system(
                nc, js, (36400, 36499), extra=[PRESENCE], configure=with_admin
            ) as system,
            async_playwright() as pw,
        ):
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                page.set_default_timeout(15_000)
                await page.goto(system.admin_url)
                await page.fill("input[name=username]", "alice")
                await page.fill("input[name=password]", ADMIN_PASSWORD)
                await page.click("button[type=submit]")
                row = page.locator('tr[data-desk="HD0001"]')
                await expect(row).to_have_attribute("data-state", "idle")
                await expect(page.locator("#live.on")).to_have_count(1)

                login = await sipp_desk_call(
                    system,
                    tmp_path,
                    desk="HD0001",
                    dial="*77*100*",
                    digits=PINS["100"] + "#",
                    rtp_listener=listener.port,
                )
                assert login.returncode == 0, login.stderr[-2000:] + login.messages[-3000:]
                await expect(row).to_have_attribute("data-state", "logged_in")
                await expect(row.locator("td.user")).to_contain_text("Ann Example")

                dialogs: list[str] = []

                async def accept(dialog: Dialog) -> None:
                    dialogs.append(dialog.message)
                    await dialog.accept()

                page.on("dialog", accept)
                await row.locator("button.logout").click()
                await expect(row).to_have_attribute("data-state", "idle")
                assert dialogs == ["Log 100 (Ann Example) out of HD0001?"]
            finally:
                await browser.close()
            events = await system.desk_ledger("HD0001")
    finally:
        listener.close()
    assert [type(e) for e in events] == [LoggedIn, LoggedOut]
    last = events[-1]
    assert isinstance(last, LoggedOut)
    assert (last.user, last.reason, last.cause.actor) == ("100", "admin", "admin:alice")
    assert events[0].cause.actor == "user:100"
