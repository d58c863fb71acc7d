"""`newsletter send --yes` with the state in SQLite and in PostgreSQL, side by side in one run,
against the loopback stand-in of send_throughput.py. PostgreSQL is a throwaway local cluster
(tests/postgres_cluster.py; fsync off, so both back ends skip the disk's flush cost alike: the
comparison is of the store's work, not of the disk).

Prints recipients per second, client CPU seconds and peak RSS, each the best of several runs,
and the ratio of the two. Run from the repository root:
    python benchmarks/send_store.py [N ...] [--delay SECONDS] [--repeat RUNS]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from send_throughput import best, make_folder, measure, row, send_env, start_server  # noqa: E402

from newsletter_cli.store import migrate  # noqa: E402
from tests.postgres_cluster import Cluster, programs  # noqa: E402


def main(sizes: list[int], delay: float, repeat: int) -> None:
    found = programs()
    if found is None:
        raise SystemExit("PostgreSQL is not installed (initdb not found)")
    cluster = Cluster(found).start()
    command = [sys.executable, "-m", "newsletter_cli", "send", "issues/bench.md", "--yes", "--no-sync"]
    try:
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            server, url = start_server(delay, tmp)
            env = send_env(url)
            try:
                for n in sizes:
                    folder = make_folder(tmp, n)
                    lite, server_runs = [], []
                    for _ in range(repeat):  # alternating: the machine's speed drifts within minutes
                        shutil.rmtree(folder / ".newsletter", ignore_errors=True)
                        lite.append(measure(command, folder, env))
                        database = cluster.database()
                        migrate(database)
                        server_runs.append(measure(command, folder, {**env, "NEWSLETTER_DATABASE_URL": database}))
                    sqlite_best, pg_best = best(lite), best(server_runs)
                    row("sqlite", n, delay, sqlite_best)
                    row("postgresql", n, delay, pg_best)
                    print(f"{'':<10} postgresql / sqlite rate: {sqlite_best['wall'] / pg_best['wall']:.0%}", flush=True)
                    shutil.rmtree(folder)
            finally:
                server.terminate()
    finally:
        cluster.stop()


if __name__ == "__main__":
    args = sys.argv[1:]
    delay = 0.0
    if "--delay" in args:
        at = args.index("--delay")
        delay = float(args[at + 1])
        del args[at : at + 2]
    repeat = 3
    if "--repeat" in args:
        at = args.index("--repeat")
        repeat = int(args[at + 1])
        del args[at : at + 2]
    main([int(n) for n in args] or [10_000, 100_000], delay, repeat)
