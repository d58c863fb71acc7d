"""Reading, validating and de-duplicating a subscriber list: rows per second and peak memory.

Each size runs in a fresh process so its peak RSS is its own.
Run from the repository root:  python benchmarks/subscribers_scan.py [N ...]
"""

from __future__ import annotations

import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(path: Path, n: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "city"])
        for i in range(n):
            # every 1000th row repeats an earlier address; every 5000th is invalid
            number = i - 500 if i % 1000 == 999 else i
            email = f"bad address {i}" if i % 5000 == 4999 else f"subscriber.{number}@example{number % 97}.com"
            writer.writerow([email, f"First{i}", f"Last{i}", "Mississauga"])


def measure(path: Path) -> None:
    from newsletter_cli.subscribers import Counts, scan

    counts = Counts()
    start = time.perf_counter()
    cpu = time.process_time()
    for row in scan(path):
        counts.add(row)
    elapsed = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{counts.rows:>9,} rows  {counts.rows / elapsed:>9,.0f} rows/s  {time.process_time() - cpu:6.2f} s CPU  "
        f"peak RSS {rss:6.1f} MB  ({counts})"
    )


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"list-{n}.csv"
            generate(path, n)
            subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        measure(Path(sys.argv[2]))
    else:
        main([int(n) for n in sys.argv[1:]] or [10_000, 100_000, 1_000_000])
