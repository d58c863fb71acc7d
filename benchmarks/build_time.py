"""How long `newsletter build` takes on the example issue: a cold process and a warm render.

Run from the repository root:  python benchmarks/build_time.py [runs]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from newsletter_cli.build import build
from newsletter_cli.config import load_config

ROOT = Path(__file__).resolve().parent.parent
ISSUE = ROOT / "issues" / "2022-12-baby-botox.md"


def main(runs: int) -> None:
    cold = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "newsletter_cli", "build", str(ISSUE), "--out", "/tmp/newsletter-bench"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        cold.append(time.perf_counter() - start)

    config = load_config(ROOT / "newsletter.toml")
    result = build(ISSUE, config, out_dir=Path("/tmp/newsletter-bench"))
    warm = []
    for _ in range(runs):
        start = time.perf_counter()
        build(ISSUE, config, out_dir=Path("/tmp/newsletter-bench"))
        warm.append(time.perf_counter() - start)

    print(f"example issue: {ISSUE.relative_to(ROOT)}")
    print(f"html size: {result.html_bytes} bytes ({result.html_bytes / 1024:.1f} KB)")
    print(f"cold process, median of {runs}: {statistics.median(cold) * 1000:.0f} ms")
    print(f"warm build in process, median of {runs}: {statistics.median(warm) * 1000:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
