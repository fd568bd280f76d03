"""The console in a real Chromium: sign in, see the desks, watch a login arrive live,
log the user out remotely."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from playwright.async_api import Dialog, async_playwright, expect

from hotdesk_contracts import subjects
from hotdesk_contracts.events import LoggedOut
from hotdesk_ledger.store import EventStore
from tests.presence.conftest import DIRECTORY
from tests.presence.console import CHROMIUM, CHROMIUM_ARGS, log_in, running_presence

pytestmark = pytest.mark.e2e


async def test_a_login_elsewhere_shows_live_and_the_admin_logs_the_user_out(
    nc: Client, js: JetStreamContext
) -> None:
    async with running_presence(nc, js, DIRECTORY) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(10_000)
            await page.goto(url)
            await page.fill("input[name=username]", "alice")
            await page.fill("input[name=password]", "alice-pass")
            await page.click("button[type=submit]")
            row = page.locator('tr[data-desk="HD0001"]')
            await expect(row).to_have_attribute("data-state", "idle")
            await expect(page.locator("tr[data-desk]")).to_have_count(3)
            await expect(page.locator("#live.on")).to_have_count(1)

            await log_in(js, "HD0001", "100")
            await expect(row).to_have_attribute("data-state", "logged_in")
            await expect(row.locator("td.user")).to_contain_text("Ada Lovelace")

            dialogs: list[str] = []

            async def accept(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                await dialog.accept()

            page.on("dialog", accept)
            await row.locator("button.logout").click()
            await expect(row).to_have_attribute("data-state", "idle")
            assert dialogs == ["Log 100 (Ada Lovelace) out of HD0001?"]

            await row.locator("button.desk-name").click()
            await expect(page.locator("#history-list li").first).to_contain_text("admin:alice")
        finally:
            await browser.close()
    stored = await EventStore(js).read(subjects.desk_ledger("HD0001"))
    last = stored[-1].event
    assert isinstance(last, LoggedOut)
    assert last.reason == "admin"
    assert last.cause.actor == "admin:alice"
