"""Benchmark: the resident-matrix search backend vs CPU FAISS Flat, and EF scoring on it vs the CPU path.

Rows (issue 9, item 4):
- exact top-10 search, one query at a time, p50: the resident matrix (storage/matrix_index.py, what
  `--search-device cuda` serves from; fp16 on CUDA, fp32 on CPU) vs FAISS `IndexFlatIP` on the CPU
  (the store's `Flat` index) over the same vectors; recall@10 of the resident top-10 against FAISS's;
- EF (ejection_fraction, 202 candidates) over V stored videos: the resident scorer
  (tasks/resident_scoring.py, batches as the service's ScoreVideos runs them) vs today's CPU
  vectorised path (tasks/scoring_math.score_regression) measured on a sample and scaled linearly.

Synthetic data: random L2-normalised 512-d vectors (generated on the device when it is CUDA).
Ratios are measured in one process; absolute times are printed for CUDA runs only.

    python bench/search_gpu.py                          # CPU here: reduced sizes, CPU rows
    python bench/search_gpu.py --device cuda --frames 1000000 10000000 --videos 1000000   # the GPU rows
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "plugins"))

from echosearch.server.storage.frame_ids import FRAME_BITS  # noqa: E402
from echosearch.server.storage.matrix_index import MatrixIndex  # noqa: E402
from echosearch.server.tasks.registry import load_registry  # noqa: E402
from echosearch.server.tasks.resident_scoring import regression_scores  # noqa: E402
from echosearch.server.tasks.scoring_math import score_regression  # noqa: E402

DIM = 512
SCORE_BATCH = 1024  # videos per ScoreVideos batch (api.DEFAULT_SCORE_BATCH)


def unit_rows(n: int, device: torch.device, seed: int) -> torch.Tensor:
    """(n, DIM) random unit rows in fp32, generated chunk by chunk on `device`."""
    g = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty((n, DIM), dtype=torch.float32, device=device)
    for lo in range(0, n, 1 << 20):
        x = torch.randn((min(1 << 20, n - lo), DIM), generator=g, device=device)
        out[lo : lo + len(x)] = x / x.norm(dim=1, keepdim=True)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def p50(fn, queries: np.ndarray, device: torch.device) -> tuple[float, list]:
    times, out = [], []
    for q in queries:
        sync(device)
        t = time.perf_counter()
        out.append(fn(q[None]))
        sync(device)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def search_row(n: int, device: torch.device, queries: int, faiss_queries: int) -> str:
    x = unit_rows(n, device, seed=n)
    ids = np.arange(n, dtype=np.int64)
    resident = MatrixIndex(DIM, device=device, capacity=n)
    for lo in range(0, n, 1 << 20):  # appended in ingest-sized pieces, as the store does
        resident.add(ids[lo : lo + (1 << 20)], x[lo : lo + (1 << 20)])
    xc = x.cpu().numpy()
    del x
    flat = faiss.IndexFlatIP(DIM)
    flat.add(xc)
    del xc
    q = unit_rows(queries, torch.device("cpu"), seed=1).numpy()
    resident.search(q[:2], 10)  # warm up (CUDA context, kernels)
    t_res, got = p50(lambda v: resident.search(v, 10)[1], q, device)
    t_faiss, want = p50(lambda v: flat.search(v, 10)[1], q[:faiss_queries], torch.device("cpu"))
    recall = np.mean([len(set(g[0]) & set(w[0])) / 10 for g, w in zip(got, want)])
    what = f"{resident.dtype}".removeprefix("torch.")
    absolute = f" ({1000 * t_res:.2f} ms vs {1000 * t_faiss:.1f} ms)" if device.type == "cuda" else ""
    return (
        f"| exact top-10 p50, {n:,} frames: resident {device.type} ({what}) vs CPU FAISS Flat "
        f"| {t_faiss / t_res:.1f}×{absolute}; recall@10 vs FAISS {recall:.3f} |"
    )


def ef_row(n_videos: int, fpv: int, device: torch.device, cpu_sample: int) -> str:
    task = load_registry().get("ejection_fraction")
    values = task.candidate_values()
    text = unit_rows(len(values), torch.device("cpu"), seed=7).numpy()
    n = n_videos * fpv
    x = unit_rows(n, device, seed=3)
    resident = MatrixIndex(DIM, device=device, capacity=n)
    vids = np.arange(1, n_videos + 1, dtype=np.int64)
    fids = ((vids[:, None] << FRAME_BITS) + np.arange(fpv)).reshape(-1)
    for lo in range(0, n, 1 << 20):
        resident.add(fids[lo : lo + (1 << 20)], x[lo : lo + (1 << 20)])
    sample = x[: cpu_sample * fpv].cpu().numpy()
    del x
    offsets = np.arange(cpu_sample + 1, dtype=np.int64) * fpv
    t = time.perf_counter()
    want = score_regression(sample, offsets, text, values)
    t_cpu = (time.perf_counter() - t) * n_videos / cpu_sample

    def run() -> np.ndarray:
        out = []
        for lo in range(0, n_videos, SCORE_BATCH):
            part = vids[lo : lo + SCORE_BATCH] << FRAME_BITS
            rows, offs = resident.video_rows(part, part + (1 << FRAME_BITS))
            out.append(regression_scores(resident.frames, rows, offs, text, values))
        return np.concatenate(out)

    run() if n_videos <= 10 * SCORE_BATCH else None  # warm-up on small runs only
    sync(device)
    t = time.perf_counter()
    got = run()
    sync(device)
    t_dev = time.perf_counter() - t
    agree = float(np.mean(got[:cpu_sample] == want))
    absolute = f" ({t_dev:.2f} s vs {t_cpu:.0f} s)" if device.type == "cuda" else ""
    return (
        f"| EF (202 candidates) over {n_videos:,} videos × {fpv} frames: resident {device.type} "
        f"({resident.dtype}) vs CPU vectorised (sample of {cpu_sample:,}, scaled) "
        f"| {t_cpu / t_dev:.1f}×{absolute}; answers equal on the sample: {100 * agree:.2f} % |"
    ).replace("torch.", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--frames", type=int, nargs="+", default=[100_000, 300_000], help="search index sizes")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--faiss-queries", type=int, default=10, help="CPU FAISS queries timed (slow at 10M)")
    ap.add_argument("--videos", type=int, default=5_000, help="stored videos scored for EF")
    ap.add_argument("--frames-per-video", type=int, default=20)
    ap.add_argument("--cpu-sample", type=int, default=2_000, help="videos the CPU path scores (scaled to --videos)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible")
    print(
        f"device {device}; torch {torch.__version__}; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads"
    )
    print("\n| measure | result |\n|---|---|")
    for n in args.frames:
        print(search_row(n, device, args.queries, args.faiss_queries), flush=True)
    print(ef_row(args.videos, args.frames_per_video, device, min(args.cpu_sample, args.videos)), flush=True)


if __name__ == "__main__":
    main()
