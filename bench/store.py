"""Storage benchmark at the issue's size: ingest, Flat vs ANN top-10 latency/recall, restart, bytes/frame.

Synthetic data shaped like EchoCLIP frame embeddings (stated in the output):
`--centres` view/pathology centres on the unit sphere; each video's centre is
a centre plus noise (cos ≈ 0.78 to it); its frames are the video centre plus
smaller noise (cos ≈ 0.9 to it, ≈ 0.8 between frames of one clip); all
L2-normalised. Queries: "frame-like" = a new frame of a stored clip; "text-like"
= a centre plus heavy noise (far from every stored frame, as text prompts are
in CLIP space). Uniformly random vectors (the worst case for any ANN index, and
unlike real embeddings) are reported as a second line. Prints a markdown table.

    python bench/store.py                      # 1M frames = 50k videos × 20 (about 10 min on 2 cores)
    python bench/store.py --frames 100000      # quick look
    python bench/store.py --only-filters --filter-ann IVF1024,Flat   # issue 9 item 6: filters, deletes
    python bench/store.py --only-ann --build-threads 2 --ann HNSW32 IVF4096,Flat \
        --efsearch 64 128 256 512 --nprobe 32 64 128   # index choice only: fill, Flat, ANN sweeps

`--ann` takes several factories (each built from the same store and ground truth,
one at a time); HNSW factories sweep `--efsearch`, the others `--nprobe`.
`--only-ann` skips the single-transaction ingest sample, the restart and
disk rows and the uniform worst case, and re-measures Flat just before each sweep.
`--only-filters` fills the store, then prints only the filtered-search rows (Flat and
each `--filter-ann` factory) and the delete row (bench/store_filters.py).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy/faiss load: 2 shared cores, oversubscription hurts

import argparse  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "server"), str(ROOT / "clients")]  # the server uses the light echosearch.errors
from echosearch.server.records import NewVideo, VideoMetadata  # noqa: E402
from echosearch.server.services.ingest import validate_video  # noqa: E402
from echosearch.server.storage.catalog import Catalog  # noqa: E402
from echosearch.server.storage.frame_ids import frame_ids_for  # noqa: E402
from echosearch.server.storage.index import VectorIndex  # noqa: E402
from echosearch.server.storage.store import Store  # noqa: E402

log = logging.getLogger("bench.store")
MODEL = "bench-synthetic"


def normed(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32, copy=False)


class Synth:
    """Deterministic clustered video embeddings (per-dimension noise sigmas; norm ≈ sigma·√dim)."""

    def __init__(
        self,
        dim: int,
        fpv: int,
        n_videos: int,
        centres: int,
        video_sigma: float = 0.035,
        frame_sigma: float = 0.02,
        text_sigma: float = 0.06,
    ) -> None:
        self.dim, self.fpv, self.frame_sigma, self.text_sigma = dim, fpv, frame_sigma, text_sigma
        rng = np.random.default_rng(0)
        self.centres = normed(rng.standard_normal((centres, dim)))
        which = rng.integers(0, centres, n_videos)
        # video centres kept (n_videos × dim floats) so queries can be new frames of stored clips
        self.video_centres = normed(self.centres[which] + video_sigma * rng.standard_normal((n_videos, dim)))

    def frames(self, start: int, count: int) -> np.ndarray:
        """(count, fpv, dim) frame embeddings of videos start..start+count-1."""
        rng = np.random.default_rng(1_000_003 + start)
        base = self.video_centres[start : start + count, None, :]
        return normed(base + self.frame_sigma * rng.standard_normal((count, self.fpv, self.dim), dtype=np.float32))

    def frame_queries(self, n: int, seed: int = 7) -> np.ndarray:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(self.video_centres), n)
        return normed(self.video_centres[picks] + self.frame_sigma * rng.standard_normal((n, self.dim)))

    def text_queries(self, n: int, seed: int = 8) -> np.ndarray:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(self.centres), n)
        return normed(self.centres[picks] + self.text_sigma * rng.standard_normal((n, self.dim)))


def new_video(i: int, emb: np.ndarray) -> NewVideo:
    """Synthetic video i, checked as the ingest service checks every video before the store sees it."""
    idx = np.arange(len(emb), dtype=np.int64) * 2
    return validate_video(
        NewVideo(
            sha256=f"{i:064x}",
            source_name=f"v{i}.avi",
            size_bytes=10_000,
            fps=30.0,
            total_frames=40,
            width=112,
            height=112,
            model_identity=MODEL,
            metadata=VideoMetadata(view=("A4C", "PLAX")[i % 2], tags={"site": str(i % 7), "decile": str(i % 10)}),
            frame_indices=idx,
            timestamps=idx / 30.0,
            embeddings=emb,
        )
    )


def latency(index, queries: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    """Median single-query latency (ms) and the ids found."""
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None], k)
        times.append(time.perf_counter() - t)
        found.append(ids[0])
    return 1000 * float(np.median(times)), np.vstack(found)


def recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact)]))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def sample_ingest(data: Path, synth: Synth, n: int) -> tuple[str, str]:
    """Per-video latency of the acknowledged single-video path (one transaction each) into a fresh store."""
    store = Store(data, save_every=0, use_gpu=False, memory_limit="1GB")
    times = []
    for start in range(0, n, 500):
        embs = synth.frames(start, min(500, n - start))
        for j, emb in enumerate(embs):
            t = time.perf_counter()
            store.add_video(new_video(start + j, emb))
            times.append(time.perf_counter() - t)
    store.close()
    shutil.rmtree(data)
    ms = 1000 * np.asarray(times)
    return (
        f"ingest, 1 transaction per video (add_video, sample of {n:,} into an empty store)",
        f"median {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms per video — "
        f"{n / ms.sum() * 1000:,.0f} videos/s",
    )


def fill(store: Store, synth: Synth, start: int, stop: int, batch: int) -> None:
    for b in range(start, stop, batch):
        embs = synth.frames(b, min(batch, stop - b))
        store.add_videos([new_video(b + j, e) for j, e in enumerate(embs)])
        if (b - start) % (10 * batch) == 0:
            print(
                f"  ingested {b - start + len(embs):,}/{stop - start:,} videos, rss {rss_gib():.1f} GiB",
                file=sys.stderr,
                flush=True,
            )


def emit(rows: list, key: str, value: str) -> None:
    """Append a table row and echo it to stderr at once (a long run shows results as they come)."""
    rows.append((key, value))
    print(f"  | {key} | {value} |", file=sys.stderr, flush=True)


def ann_sweep(
    rows: list,
    label: str,
    factory: str,
    build,
    sets: dict,
    settings: list[int],
    flat_ms: dict,
    build_threads: int = 1,
    flat=None,
) -> None:
    """Build an ANN index with `build(index)`, then latency/recall per nprobe/efSearch setting and query set.

    The build runs on `build_threads` OpenMP threads, the timed single queries on 1. With `flat`
    given, Flat's latency is re-measured just before the sweep (the ratios then compare like
    with like on a shared, noisy machine) and `flat_ms` is updated in place.
    """
    import faiss

    t = time.perf_counter()
    ann = VectorIndex(next(iter(sets.values()))[0].shape[1], factory, use_gpu=False)
    faiss.omp_set_num_threads(build_threads)
    try:
        build(ann)
    finally:
        faiss.omp_set_num_threads(1)
    threads = f", {build_threads} threads" if build_threads != 1 else ""
    emit(rows, f"{label}: {factory} build (train + add{threads})", f"{time.perf_counter() - t:.1f} s")
    if flat is not None:
        for name, (queries, _) in sets.items():
            flat_ms[name], _ = latency(flat, queries[: max(20, len(queries) // 4)])
        emit(
            rows,
            f"{label}: Flat re-measured before the {factory} sweep",
            ", ".join(f"{name} {ms:.1f} ms" for name, ms in flat_ms.items()),
        )
    knob = "efSearch" if "HNSW" in factory else "nprobe"
    for value in settings:
        ann.nprobe, ann.efsearch = (value, None) if knob == "nprobe" else (None, value)
        ann._configure()
        parts = []
        for name, (queries, exact) in sets.items():
            ms, got = latency(ann, queries)
            parts.append(f"{name}: {ms:.2f} ms, {flat_ms[name] / ms:.0f}× Flat, recall@10 {recall(got, exact):.3f}")
        emit(rows, f"{label}: {factory} {knob}={value}", " — ".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--frames-per-video", type=int, default=20)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--centres", type=int, default=2000, help="view/pathology clusters in the synthetic data")
    ap.add_argument("--batch", type=int, default=1000, help="videos per add_videos transaction for the fill")
    ap.add_argument("--sample", type=int, default=2000, help="videos ingested one transaction each, timed")
    ap.add_argument(
        "--ann", nargs="+", default=["IVF1024,Flat"], help="ANN factory strings, each built and swept in turn"
    )
    ap.add_argument(
        "--nprobe",
        type=int,
        nargs="+",
        default=[8, 16, 32, 64, 128],
        help="IVF lists probed, swept for non-HNSW factories",
    )
    ap.add_argument(
        "--efsearch",
        type=int,
        nargs="+",
        default=[32, 64, 128, 256, 512],
        help="HNSW search breadth, swept for HNSW factories",
    )
    ap.add_argument("--uniform-nprobe", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--uniform-efsearch", type=int, nargs="+", default=[128, 512])
    ap.add_argument(
        "--build-threads", type=int, default=1, help="OpenMP threads for ANN builds (queries are always timed on 1)"
    )
    ap.add_argument("--no-uniform", action="store_true", help="skip the uniform-random worst case")
    ap.add_argument(
        "--only-ann",
        action="store_true",
        help="index choice only: skip the ingest sample, restart/disk rows and the "
        "uniform case; re-measure Flat before each ANN sweep",
    )
    ap.add_argument("--only-filters", action="store_true", help="only the filtered-search and delete rows")
    ap.add_argument("--filter-ann", nargs="*", default=[], help="ANN factories whose filtered search is also measured")
    ap.add_argument("--delete-fraction", type=float, default=0.01, help="share of videos deleted in the delete row")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--catch-up", type=int, default=300, help="videos written after the last snapshot")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)  # single-query latency on 2 busy shared cores; 2 threads were ~8x slower
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-store-"))
    if data.exists():
        shutil.rmtree(data)
    fpv, dim = args.frames_per_video, args.dim
    n_videos = args.frames // fpv
    synth = Synth(dim, fpv, n_videos + args.catch_up, args.centres)
    t_all = time.perf_counter()
    rows: list[tuple[str, str]] = [
        (
            "data",
            f"{n_videos:,} videos × {fpv} frames = {n_videos * fpv:,} frames, dim {dim}; clustered like "
            f"EchoCLIP embeddings: {args.centres:,} centres, video cos≈0.78 to its centre, frame cos≈0.9 "
            "to its video; L2-normalised",
        ),
    ]
    if not (args.only_ann or args.only_filters):
        rows.append(
            sample_ingest(
                data.with_name(data.name + "-sample"), synth.__class__(dim, fpv, args.sample, args.centres), args.sample
            )
        )

    store = Store(data, save_every=0, use_gpu=False, memory_limit="2GB")
    t = time.perf_counter()
    fill(store, synth, 0, n_videos, args.batch)
    fill_s = time.perf_counter() - t
    rows.append(
        (
            f"ingest, batched (add_videos, {args.batch:,} videos per transaction, catalog + Flat index)",
            f"{fill_s:.0f} s — {n_videos / fill_s:,.0f} videos/s, {n_videos * fpv / fill_s:,.0f} frames/s",
        )
    )
    t = time.perf_counter()
    store.save()
    rows.append(("index save (a Flat index keeps no snapshot: its manifest only)", f"{time.perf_counter() - t:.1f} s"))

    if args.only_filters:
        filters_only(store, synth, args, rows, data)
        finish(rows, t_all)
        return
    sets = {"frame-like": synth.frame_queries(args.queries), "text-like": synth.text_queries(args.queries)}
    flat_ms, exact_sets = {}, {}
    for name, q in sets.items():
        exact_sets[name] = (q, store.frame_index.search(q, 10)[1])  # exact ground truth, batched
        flat_ms[name], _ = latency(store.frame_index, q[: max(20, args.queries // 4)])
    t0 = time.perf_counter()
    for q in sets["frame-like"][:20]:
        store.search_frames(q, 10)
    e2e_ms = 1000 * (time.perf_counter() - t0) / 20
    rows.append(
        (
            "Flat (exact) top-10, one query: FAISS / Store.search_frames",
            f"{flat_ms['frame-like']:.1f} ms / {e2e_ms:.1f} ms (text-like {flat_ms['text-like']:.1f} ms)",
        )
    )

    def from_catalog(ann: VectorIndex) -> None:
        for vids, offsets, emb in store.catalog.iter_embedding_batches(None):
            counts = np.diff(offsets)
            ann.add(np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)]), emb)

    def settings(factory: str, nprobe: list[int], efsearch: list[int]) -> list[int]:
        return efsearch if "HNSW" in factory else nprobe

    for factory in args.ann:
        ann_sweep(
            rows,
            "clustered",
            factory,
            from_catalog,
            exact_sets,
            settings(factory, args.nprobe, args.efsearch),
            flat_ms,
            args.build_threads,
            flat=store.frame_index if args.only_ann else None,
        )
    store.close()
    if args.only_ann:
        if args.data is None:
            shutil.rmtree(data)
        finish(rows, t_all)
        return

    cat = Catalog(data / "catalog.duckdb", memory_limit="2GB")  # writes the index never sees: a crash
    for b in range(n_videos, n_videos + args.catch_up, args.batch):
        embs = synth.frames(b, min(args.batch, n_videos + args.catch_up - b))
        cat.add_videos([new_video(b + j, e) for j, e in enumerate(embs)])
    cat.close()
    t = time.perf_counter()
    store = Store(data, save_every=0, use_gpu=False, memory_limit="2GB")
    restart_s = time.perf_counter() - t
    total_frames = store.catalog.count_frames()
    store.close()
    index_bytes = dir_bytes(data / "index")
    catalog_bytes = dir_bytes(data) - index_bytes
    rows += [
        (
            f"restart: the Flat index rebuilt from one catalog scan ({args.catch_up} videos written after the "
            "last save included; a Flat index keeps no snapshot)",
            f"{restart_s:.1f} s",
        ),
        (
            "disk per frame: catalog (DuckDB)",
            f"{catalog_bytes / total_frames:,.0f} B/frame ({catalog_bytes / 2**30:.2f} GiB; raw vector {4 * dim} B)",
        ),
        (
            "disk per frame: index folder (a Flat index: its manifest only)",
            f"{index_bytes / total_frames:,.2f} B/frame",
        ),
    ]
    if args.data is None:
        shutil.rmtree(data)

    if not args.no_uniform:
        rng = np.random.default_rng(11)
        xb = np.empty((n_videos * fpv, dim), np.float32)
        for s in range(0, len(xb), 100_000):  # in chunks: whole-array temporaries would triple the peak
            xb[s : s + 100_000] = normed(rng.standard_normal((min(100_000, len(xb) - s), dim), dtype=np.float32))
        uq = normed(rng.standard_normal((args.queries, dim)))
        flat = faiss.IndexFlatIP(dim)
        flat.add(xb)
        exact = flat.search(uq, 10)[1]
        u_flat_ms, _ = latency(flat, uq[: max(20, args.queries // 4)])
        del flat
        ids = np.arange(len(xb), dtype=np.int64)

        def chunked(ann: VectorIndex) -> None:  # chunks: train on the first, never copy all at once
            for s in range(0, len(xb), 100_000):
                ann.add(ids[s : s + 100_000], xb[s : s + 100_000])

        for factory in args.ann:
            ann_sweep(
                rows,
                "uniform random (worst case)",
                factory,
                chunked,
                {"uniform": (uq, exact)},
                settings(factory, args.uniform_nprobe, args.uniform_efsearch),
                {"uniform": u_flat_ms},
                args.build_threads,
            )
        del xb
    finish(rows, t_all)


def filters_only(store: Store, synth: Synth, args, rows: list, data: Path) -> None:
    """Filtered search on Flat (and each --filter-ann index) and deletes under concurrent search."""
    from store_filters import ann_filtered_rows, delete_rows, filtered_rows

    def add(key: str, value: str) -> None:
        emit(rows, key, value)

    queries = synth.frame_queries(min(args.queries, 100))
    filtered_rows(store, queries, add)
    for factory in args.filter_ann:
        ann = VectorIndex(args.dim, factory, use_gpu=False)
        for vids, offsets, emb in store.catalog.iter_embedding_batches(None):
            counts = np.diff(offsets)
            ann.add(np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)]), emb)
        ann_filtered_rows(store, ann, queries, add)
        del ann
    delete_rows(store, queries, add, args.delete_fraction)
    store.close()
    if args.data is None:
        shutil.rmtree(data)


def finish(rows: list, t_all: float) -> None:
    rows.append(("peak RSS of the benchmark", f"{rss_gib():.2f} GiB"))
    rows.append(("benchmark wall time", f"{time.perf_counter() - t_all:.0f} s"))
    print("\n| measure | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
