"""Takes the console screenshots in ``docs/img/`` (desktop and phone widths).

Run from the repository root: ``python -m tests.presence.screenshots``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
from playwright.async_api import async_playwright, expect

from hotdesk_contracts import subjects
from hotdesk_contracts.directory import Desk, Directory, Extension
from hotdesk_contracts.messages import RegistrationChanged
from tests.presence.conftest import DIRECTORY
from tests.presence.console import CHROMIUM, CHROMIUM_ARGS, log_in, running_presence
from tests.support.natsserver import NatsServer

OUT = Path("docs/img")
PEOPLE = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"]
VENDORS = [("yealink", "T54W"), ("poly", "VVX450"), ("snom", "D785"), ("grandstream", "GRP2614")]


def demo_directory() -> Directory:
    desks = [
        Desk(
            name=f"HD{n:04d}",
            mac=f"805EC0{n:06d}",
            sip_password=f"s{n}",
            vendor=VENDORS[n % 4][0],
            model=VENDORS[n % 4][1],
        )
        for n in range(1, 9)
    ]
    people = [Extension(number=str(100 + i), name=name) for i, name in enumerate(PEOPLE)]
    return msgspec.structs.replace(DIRECTORY, desks=desks, extensions=people)


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    server = NatsServer().start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        async with running_presence(nc, js, demo_directory()) as url:
            for desk in ("HD0001", "HD0002", "HD0003", "HD0005", "HD0006", "HD0008"):
                event = RegistrationChanged(
                    at=datetime.now(UTC),
                    origin="edge-1",
                    aor=desk,
                    kind="registered",
                    contacts=[f"sip:{desk}@192.0.2.10:5060"],
                )
                await js.publish(
                    subjects.edge_registration(desk, "registered"), msgspec.json.encode(event)
                )
            for desk, user in (("HD0001", "100"), ("HD0003", "102"), ("HD0005", "101")):
                await log_in(js, desk, user)
            await log_in(js, "HD0006", "103")
            await log_in(js, "HD0001", "104", seen_user="100")  # a roam
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for name, size in (
                    ("console-desktop", {"width": 1280, "height": 800}),
                    ("console-phone", {"width": 390, "height": 844}),
                ):
                    page = await browser.new_page(viewport=size)  # type: ignore[arg-type]
                    await page.goto(url)
                    if name == "console-desktop":
                        await page.screenshot(path=str(OUT / "console-signin.png"))
                    await page.fill("input[name=username]", "alice")
                    await page.fill("input[name=password]", "alice-pass")
                    await page.click("button[type=submit]")
                    await expect(page.locator("#live.on")).to_have_count(1)
                    await expect(page.locator('tr[data-desk="HD0006"]')).to_have_attribute(
                        "data-state", "logged_in"
                    )
                    await page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                    if name == "console-desktop":
                        await page.locator('tr[data-desk="HD0001"] button.desk-name').click()
                        await expect(page.locator("#history-list li")).to_have_count(2)
                        await page.screenshot(path=str(OUT / "console-history.png"), full_page=True)
                    await page.close()
                await browser.close()
        await nc.drain()
    finally:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
