"""Regenerate the README's pictures of the example issue in headless Chromium.

Run from the repository root after `newsletter build issues/2022-12-baby-botox.md`:
    python docs/screenshot.py
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

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
        browser.close()


if __name__ == "__main__":
    main()
