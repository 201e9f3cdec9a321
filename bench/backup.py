"""Online backup (issue 20): a backup's time against copying the same files, and searches while it runs.

On a store of --frames frames (20 per video, synthetic 512-d through the Store API, served over gRPC):
1. the floor: copying the store's files (checkpointed catalog, index snapshot, PHI key) with shutil.copyfile
   (sendfile: no hashing, no locks), and `Backup` over gRPC (checkpoint + snapshot save + one-pass copy with
   SHA-256 + manifest), alternated --rounds times; the medians' ratio (target <= 2x); and DuckDB's
   `EXPORT DATABASE` of the catalog to Parquet, the alternative docs/operations.md explains not taking;
2. SearchByText latency over gRPC unloaded, then while a backup runs (target p99 <= 2x unloaded, and no
   search stalls > 100 ms beyond the unloaded worst case). Prints a markdown table; no assertions.
Example: python bench/backup.py --frames 1000000
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "clients"), str(ROOT / "server"), str(ROOT / "bench")]
import numpy as np  # noqa: E402
from api import QUERIES, fill, pct  # noqa: E402

from echosearch.client import Client  # noqa: E402
from echosearch.server.storage import backup as files  # noqa: E402
from tests.fixtures.servers import start_inprocess  # noqa: E402


def copy_floor(data: Path, out: Path) -> float:
    """Seconds to copy the files a backup holds, plainly."""
    names = files.store_files(data)
    t = time.perf_counter()
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / name, out / name)
    for name in names:
        with open(out / name, "rb") as f:
            os.fsync(f.fileno())  # the backup fsyncs too
    return time.perf_counter() - t


def searches(client: Client, until: threading.Event | None, n: int) -> list[float]:
    """Latencies (ms): n searches, or searches until `until` is set."""
    out = []
    i = 0
    while (until is None and i < n) or (until is not None and not until.is_set()):
        t = time.perf_counter()
        client.search_by_text(QUERIES[i % len(QUERIES)], k=10)
        out.append(1000 * (time.perf_counter() - t))
        i += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--loaded-mb-per-s", type=float, default=0, help="throttle the backup searches run beside")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-backup-", dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        running = start_inprocess(tmp / "data", model_spec="random:echoclip", phi="hash")
        try:
            services = running.services
            fill(services, args.frames)
            services.store.save()
            with Client(running.address, timeout=600) as client:
                searches(client, None, 20)  # warm: the query cache and the channel
                floor, taken, paused = [], [], []
                for r in range(args.rounds):
                    with services.store.frozen():  # the floor copies a checkpointed store, as the backup does
                        floor.append(copy_floor(services.data_dir, tmp / f"copy{r}"))
                    shutil.rmtree(tmp / f"copy{r}")
                    t = time.perf_counter()
                    last = list(client.backup(str(tmp / f"backup{r}")))[-1]
                    taken.append(time.perf_counter() - t)
                    paused.append(last.writes_paused_seconds)
                    shutil.rmtree(tmp / f"backup{r}")
                t = time.perf_counter()  # the alternative: DuckDB's own export (a snapshot, no write lock)
                services.store.catalog.cursor().execute(f"EXPORT DATABASE '{tmp / 'export'}' (FORMAT PARQUET)")
                export_s = time.perf_counter() - t
                shutil.rmtree(tmp / "export")
                size = sum((services.data_dir / n).stat().st_size for n in files.store_files(services.data_dir))
                unloaded = searches(client, None, args.queries)
                done = threading.Event()
                during: list[float] = []
                worker = threading.Thread(target=lambda: during.extend(searches(client, done, 0)))
                worker.start()
                t = time.perf_counter()
                list(client.backup(str(tmp / "loaded"), max_bytes_per_second=int(args.loaded_mb_per_s * 2**20)))
                loaded_s = time.perf_counter() - t
                done.set()
                worker.join()
        finally:
            running.stop(2)
    f, b = float(np.median(floor)), float(np.median(taken))
    print(
        f"\n{args.frames:,} frames, {size / 2**30:.2f} GiB of store files, medians of {args.rounds} alternated rounds\n"
    )
    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(f"| backup / plain copy of the same files (median) | {b / f:.2f}x | <= 2x |")
    rounds = ", ".join(f"{x / y:.2f}x" for x, y in zip(taken, floor))
    print(f"| ... each round's ratio | {rounds} | |")
    print(f"| DuckDB EXPORT DATABASE (Parquet) of the catalog alone / that copy | {export_s / f:.2f}x | (not chosen) |")
    print(
        f"| ingests held during a backup / its whole time | {np.median(paused) / b:.2f} | (searches are never held) |"
    )
    print(f"| searches during a backup: p50 / unloaded p50 | {pct(during, 50) / pct(unloaded, 50):.2f}x | |")
    print(f"| searches during a backup: p99 / unloaded p99 | {pct(during, 99) / pct(unloaded, 99):.2f}x | <= 2x |")
    stall = max(during) - max(unloaded)
    print(f"| worst search during a backup minus the unloaded worst | {stall:+.0f} ms | <= 100 ms |")
    print(
        f"\n({len(during)} searches during a {loaded_s:.1f} s backup"
        + (f" throttled to {args.loaded_mb_per_s:g} MiB/s" if args.loaded_mb_per_s else "")
        + f"; {len(unloaded)} unloaded; 2-core shared CPU box)"
    )


if __name__ == "__main__":
    main()
