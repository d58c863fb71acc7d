"""Distil caniemail's data into the small table `newsletter check` uses.

Run with the path to `data/caniemail.json` of the npm package `caniemail` (MIT):
    npm pack caniemail && tar xzf caniemail-*.tgz
    python scripts/distil_caniemail.py package/data/caniemail.json > newsletter_cli/data/client_support.json
For each feature the check looks for, it keeps the major clients whose latest test says the
feature is not supported ("n") or only partly ("a").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FEATURES = (
    "css-display-flex",
    "css-display-grid",
    "css-position",
    "css-background-image",
    "css-at-font-face",
    "css-transform",
    "css-box-shadow",
    "html-progress",
    "html-meter",
    "html-dialog",
)
MAJOR = {
    "gmail": ("desktop-webmail", "ios", "android"),
    "outlook": ("windows", "outlook-com", "macos"),
    "apple-mail": ("macos", "ios"),
    "yahoo": ("desktop-webmail", "ios", "android"),
}


def main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        source = json.load(handle)
    package = Path(path).resolve().parent.parent / "package.json"
    version = json.loads(package.read_text())["version"] if package.exists() else "unknown version"
    names, platforms = source["nicenames"]["family"], source["nicenames"]["platform"]
    features = {item["slug"]: item for item in source["data"]}
    table = {}
    for slug in FEATURES:
        item = features[slug]
        lacking = []
        for family, wanted in MAJOR.items():
            for platform in wanted:
                results = item["stats"].get(family, {}).get(platform)
                if not results:
                    continue
                _, support = list(results.items())[-1]
                if support[0] in "na":
                    partly = " (partly)" if support[0] == "a" else ""
                    lacking.append(f"{names[family]} {platforms[platform]}{partly}")
        table[slug] = {"title": item["title"], "url": item["url"], "unsupported": lacking}
    print(
        json.dumps(
            {
                "source": f"npm package caniemail {version}, data of {source['last_update_date']}",
                "license": "MIT, Copyright (c) Avi Goldman, Andrew Powell (npm package caniemail)",
                "features": table,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
