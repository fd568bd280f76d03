"""The console's history in a real Chromium: the newest page first, then "Older" until
every ledger event of the desk is listed."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from playwright.async_api import async_playwright, expect

from hotdesk_contracts import subjects
from hotdesk_ledger.store import EventStore
from tests.presence.conftest import DIRECTORY
from tests.presence.console import CHROMIUM, CHROMIUM_ARGS, running_presence
from tests.presence.factories import logged_in, logged_out

pytestmark = pytest.mark.e2e

ROUNDS = 70


async def test_older_pages_list_every_event_of_a_desk_beyond_the_cap(
    nc: Client, js: JetStreamContext
) -> None:
    store = EventStore(js)
    await store.ensure_stream()
    subject = subjects.desk_ledger("HD0002")
    for i in range(ROUNDS):
        await store.append(subject, [logged_in("HD0002", "101", i)], None)
        await store.append(subject, [logged_out("HD0002", "101", i + 0.5)], None)
    async with running_presence(nc, js, DIRECTORY) as url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(10_000)
            await page.goto(url)
            await page.fill("input[name=username]", "victor")
            await page.fill("input[name=password]", "victor-pass")
            await page.click("button[type=submit]")
            await page.locator('tr[data-desk="HD0002"] button.desk-name').click()
            items = page.locator("#history-list li")
            older = page.locator("#history-older")
            await expect(items).to_have_count(50)
            await expect(items.first).to_contain_text("101 logged out")
            await expect(older).to_be_visible()
            for shown in (100, 2 * ROUNDS):
                await older.click()
                await expect(items).to_have_count(shown)
            await expect(older).to_be_hidden()
            await expect(items.last).to_contain_text("101 logged in")
        finally:
            await browser.close()
