"""How fast `newsletter --help` and `--version` start, beside `python -c "import click"` in
the same run (the machine is noisy: best of several alternating runs). The goal: at most 1.6x
Click's own start.

    python benchmarks/startup.py [RUNS]
"""

from __future__ import annotations

import subprocess
import sys
import time

COMMANDS = {
    "import click": [sys.executable, "-c", "import click"],
    "newsletter --help": [sys.executable, "-m", "newsletter_cli", "--help"],
    "newsletter --version": [sys.executable, "-m", "newsletter_cli", "--version"],
}
GOAL = 1.6


def main(runs: int) -> None:
    best = dict.fromkeys(COMMANDS, float("inf"))
    for _ in range(runs):
        for label, command in COMMANDS.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            best[label] = min(best[label], time.perf_counter() - started)
    reference = best["import click"]
    for label, seconds in best.items():
        ratio = seconds / reference
        verdict = "" if label == "import click" else ("  meets the goal" if ratio <= GOAL else "  OVER the goal")
        print(f"{label:<22} {seconds * 1000:7.1f} ms  {ratio:4.2f}x click{verdict}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
