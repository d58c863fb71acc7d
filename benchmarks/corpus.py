"""Build every issue of tests/corpus/ and print, per issue: did it build, html and text size,
and check's errors and warnings by code.

Run it against another checkout to compare (the CLI is called, so any version works):

    python benchmarks/corpus.py                      # this checkout
    python benchmarks/corpus.py --code ../old        # another checkout's newsletter_cli, same corpus
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "corpus"
CONFIG = """\
[newsletter]
name = "Corpus News"
from_email = "news@corpusnews.ca"
postal_address = "1 Corpus Street, Toronto, Ontario"
website = "https://corpusnews.ca/"

[unsubscribe]
url = "https://corpusnews.ca/unsubscribe"
"""


def run(code: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    return subprocess.run(
        [sys.executable, "-m", "newsletter_cli", *args], cwd=folder, env=env, capture_output=True, text=True
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose newsletter_cli to run")
    parser.add_argument("--no-check", action="store_true", help="build only")
    options = parser.parse_args()
    issues = sorted(CORPUS.glob("*/*.md"))
    failed = 0
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "newsletter.toml").write_text(CONFIG)
        print(f"{'issue':58} {'build':6} {'html KB':>8} {'text KB':>8}  check")
        for issue in issues:
            name = str(issue.relative_to(CORPUS))
            built = run(options.code, folder, "build", str(issue), "--out", str(folder / "out"))
            html = folder / "out" / f"{issue.stem}.html"
            text = folder / "out" / f"{issue.stem}.txt"
            if built.returncode != 0 or not html.exists():
                failed += 1
                reason = (built.stderr.strip().splitlines() or ["?"])[-1][:110]
                print(f"{name[:58]:58} {'FAIL':6} {'':>8} {'':>8}  {reason}")
                continue
            kb = html.stat().st_size / 1024
            sizes.append(kb)
            summary = ""
            if not options.no_check:
                checked = run(options.code, folder, "check", str(issue), "--json")
                try:
                    found = json.loads(checked.stdout)
                    codes = collections.Counter(f"{f['level'][0].upper()}:{f['code']}" for f in found)
                    summary = " ".join(f"{code}x{count}" for code, count in sorted(codes.items()))
                except (ValueError, KeyError, TypeError):
                    summary = "check gave no JSON: " + (checked.stderr.strip().splitlines() or ["?"])[-1][:80]
            print(f"{name[:58]:58} {'ok':6} {kb:8.1f} {text.stat().st_size / 1024:8.1f}  {summary}")
            html.unlink()
    print(f"\n{len(issues)} issues, {failed} did not build; html KB: ", end="")
    if sizes:
        print(f"median {sorted(sizes)[len(sizes) // 2]:.1f}, largest {max(sizes):.1f}, total {sum(sizes):.0f}")
    else:
        print("none built")


if __name__ == "__main__":
    main()
