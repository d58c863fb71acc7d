"""Regenerate the README's pictures of the example issue, and of its preview, in headless Chromium.

Run from the repository root after `newsletter build issues/2022-12-baby-botox.md`:
    python docs/screenshot.py
"""

from __future__ import annotations

import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

from newsletter_cli import build, preview

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "build" / "2022-12-baby-botox.html"
SHOTS = [("example-desktop.png", 700, "light"), ("example-phone-dark.png", 375, "dark")]


def main() -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        for name, width, scheme in SHOTS:
            page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
            page.goto(HTML.as_uri())
            page.screenshot(path=str(ROOT / "docs" / name), full_page=True)
            print(f"wrote docs/{name}")
        shoot_preview(browser)
        browser.close()


def shoot_preview(browser) -> None:
    """The `newsletter preview` page at phone width, served from this repository."""
    issue = ROOT / "issues" / "2022-12-baby-botox.md"
    site = preview.LiveSite(lambda: build.preview_site(ROOT / "newsletter.toml", issue, can_send_test=True))
    server = preview.make_server(site, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/#w=phone")
        page.wait_for_function("document.querySelector('#frame').contentDocument?.readyState === 'complete'")
        page.wait_for_timeout(300)
        page.screenshot(path=str(ROOT / "docs" / "preview.png"))
        print("wrote docs/preview.png")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
