"""Three senders claiming batches of one issue's 20,000 pending recipients from one PostgreSQL at
once: how many recipients more than one of them claimed (each would be mailed twice), for a
naive claim (``UPDATE ... WHERE seq IN (SELECT ... LIMIT n)``, no lock) beside the journal's
(``Journal.next_batch``: the write lock, ``FOR UPDATE SKIP LOCKED``). Also the time each took.

Run from the repository root (PostgreSQL's programs installed; a throwaway cluster is started):
    python benchmarks/claims.py [RECIPIENTS] [SENDERS]
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from newsletter_cli.store import Store, migrate
from newsletter_cli.store.journal import Journal, decode, record
from tests.postgres_cluster import Cluster, programs

BATCH = 100


def fill(url: str, count: int) -> None:
    with Store(url) as store:
        journal = Journal(store, "issue")
        run = journal.start_run("Subject")
        rows = [(f"u{i}@example.com", record(f"u{i}@example.com", "", {})) for i in range(count)]
        journal.add([rows[k : k + 5000] for k in range(0, count, 5000)], run)
        journal.settle(run)


def naive(url: str, sender: int) -> list[str]:
    """Claim by marking the next pending rows, in one statement, as many scripts do."""
    claimed: list[str] = []
    with psycopg.connect(url, autocommit=True) as db:
        while True:
            rows = db.execute(
                "UPDATE recipients SET batch = %s WHERE seq IN (SELECT seq FROM recipients WHERE slug = 'issue'"
                " AND batch IS NULL ORDER BY seq LIMIT %s) RETURNING email",
                (sender, BATCH),
            ).fetchall()
            if not rows:
                return claimed
            claimed.extend(email for (email,) in rows)


def journal(url: str, sender: int) -> list[str]:
    claimed: list[str] = []
    with Store(url) as store:
        mine = Journal(store, "issue")
        while (batch := mine.next_batch(BATCH)) is not None:
            claimed.extend(decode(r).email for r in mine.records(batch))
    return claimed


def race(url: str, senders: int, claim: Callable[[str, int], list[str]]) -> tuple[int, int, float]:
    """(recipients claimed, claimed more than once, seconds)."""
    results: list[list[str]] = [[] for _ in range(senders)]

    def one(n: int) -> None:
        results[n] = claim(url, n + 1)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    counts = Counter(email for part in results for email in part)
    return sum(counts.values()), sum(c - 1 for c in counts.values() if c > 1), seconds


def main(count: int, senders: int) -> None:
    found = programs()
    if found is None:
        raise SystemExit("PostgreSQL is not installed (initdb not found)")
    cluster = Cluster(found).start()
    try:
        for name, claim in (("naive", naive), ("journal", journal)):
            url = cluster.database()
            migrate(url)
            fill(url, count)
            claimed, twice, seconds = race(url, senders, claim)
            print(
                f"{name:<8} {senders} senders, {count:,} recipients: {claimed:,} claimed, "
                f"{twice:,} claimed more than once, {seconds:.2f} s",
                flush=True,
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(args[0] if args else 20_000, args[1] if len(args) > 1 else 3)
