"""Peak memory of a decompression-bomb shard (issue 21 R1): `echosearch serve` (random:tiny, 64-d) in a child
process is sent zstd shards of one frame row repeated 1M and 4M times (1-5 MiB on the wire, 0.25-1 GB of
vectors); for each, the server's peak resident size (VmHWM, reset before the import) over its size before.
Target: <= 300 MB over baseline. Linux only (/proc). Not a test: memory is the machine's.

    .venv/bin/python bench/import_bomb_memory.py
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    from echosearch.client import ApiError, Client
    from echosearch.server.bulk.shards import EmbeddedVideo, shard_table
    from tests.fixtures.servers import ServerProcess

    tmp = Path(tempfile.mkdtemp(dir=ROOT.parent))
    server = ServerProcess(tmp / "data", extra=["--warm-up", "off"])
    address = server.wait_ready()
    pid = server.proc.pid

    def hwm():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    def rss():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    try:
        with Client(address, timeout=600) as c:
            info = c.info()
            dim = info.embed_dim
            emb = np.random.default_rng(0).standard_normal((1, dim)).astype(np.float32)
            emb /= np.linalg.norm(emb)
            v = EmbeddedVideo(
                sha256="a" * 64,
                source_uri="/x/a.avi",
                size_bytes=10,
                total_frames=1,
                fps=30.0,
                width=64,
                height=64,
                frame_indices=np.zeros(1, np.int64),
                timestamps=np.zeros(1),
                embeddings=emb,
            )
            one = shard_table([v], info.model_identity, dim)
            for rows in (1_000_000, 4_000_000):
                bomb = one.take(pa.array(np.zeros(rows, dtype=np.int64)))
                i = bomb.column_names.index("frame_index")
                bomb = bomb.set_column(
                    i, "frame_index", pa.array(np.arange(rows, dtype=np.int64))
                ).replace_schema_metadata(one.schema.metadata)
                path = tmp / f"bomb-{rows}.parquet"
                pq.write_table(bomb, path, compression="zstd")
                del bomb
                Path(f"/proc/{pid}/clear_refs").write_text("5")
                before = rss()
                try:
                    c.import_shard(path)
                    outcome = "imported"
                except ApiError as e:
                    outcome = f"{e.code.name}"
                print(
                    f"| {rows:,} constant rows, {path.stat().st_size / 2**20:.2f} MiB zstd, {rows * dim * 4 / 2**20:.0f} MiB of vectors | {outcome} | +{hwm() - before:.0f} MB |"
                )
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
