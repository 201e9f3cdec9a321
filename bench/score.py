"""Benchmark: task scoring over a large store, vectorised vs a per-video loop over the reference.

Synthetic data: N videos x F frames of random L2-normalised 512-d float32 vectors
(the stored embeddings; 100k x 20 = 4.1 GB) and random normalised text embeddings
(pacemaker: 2 prompts; ejection_fraction: 202 candidates). The per-video reference
(tests/reference_scoring.py, the published torch code one video at a time) runs on a
random sample and is extrapolated linearly to N; the output says so.

Prints a markdown table of times and ratios; asserts nothing about time.

    .venv/bin/python bench/score.py                  # 100k videos x 20 frames
    .venv/bin/python bench/score.py --videos 10000   # quicker
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echosearch.server.tasks.registry import load_registry  # noqa: E402
from echosearch.server.tasks.scoring_math import mean_prompt_embedding, score_binary, score_regression  # noqa: E402
from tests.fixtures.reference_scoring import reference_binary, reference_regression  # noqa: E402

DIM = 512


def unit_rows_into(out: np.ndarray, rng: np.random.Generator, chunk: int = 1 << 16) -> None:
    """Fill a preallocated (n, D) float32 array with random unit rows, chunk by chunk (no 2x temporaries)."""
    for lo in range(0, out.shape[0], chunk):
        block = out[lo : lo + chunk]
        rng.standard_normal(out=block, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.empty((n, DIM), dtype=np.float32)
    unit_rows_into(out, rng)
    return out


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t


def per_video_loop(fn, frames, offsets, sample, *args) -> tuple[np.ndarray, float]:
    """Run a reference function over the sampled videos one by one; returns (results, seconds)."""
    t = time.perf_counter()
    out = np.array([fn(frames[offsets[i] : offsets[i + 1]], *args) for i in sample])
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--sample", type=int, default=2_000, help="videos the per-video reference loop runs on")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    # The reference works on one small video at a time: torch's intra-op threads only add
    # overhead there (and fight OpenBLAS's spinning threads: ~40x slower on 2 cores).
    torch.set_num_threads(1)
    n, f = args.videos, args.frames
    sample = np.sort(rng.choice(n, size=min(args.sample, n), replace=False))
    scale = n / len(sample)

    registry = load_registry()
    pacemaker, ef = registry.get("pacemaker"), registry.get("ejection_fraction")
    frames, t_gen = timed(unit_rows, rng, n * f)
    offsets = np.arange(n + 1, dtype=np.int64) * f
    pace_emb = unit_rows(rng, len(pacemaker.candidate_texts()))
    ef_emb = unit_rows(rng, len(ef.candidate_texts()))
    ef_values = ef.candidate_values()
    print(f"# {n:,} videos x {f} frames x {DIM}-d float32 ({frames.nbytes / 2**30:.2f} GiB), generated in {t_gen:.1f}s")
    print(
        f"# reference = per-video loop over tests/reference_scoring.py (torch, 1 thread) on {len(sample):,} "
        f"random videos, extrapolated x{scale:g} to {n:,}"
    )

    rows = []

    # pacemaker (binary) over everything
    pace_vec, t_vec = timed(score_binary, frames, offsets, pace_emb)
    pace_ref, t_ref = per_video_loop(reference_binary, frames, offsets, sample, pace_emb)
    err = float(np.max(np.abs(pace_vec[sample] - pace_ref)))
    rows.append(("`pacemaker` (binary, 2 prompts), all videos", t_ref * scale, t_vec, f"max abs diff {err:.1e}"))

    # ejection_fraction (regression, 202 candidates) over everything
    ef_vec, t_vec = timed(score_regression, frames, offsets, ef_emb, ef_values)
    ef_ref, t_ref = per_video_loop(reference_regression, frames, offsets, sample, ef_emb, ef_values)
    same = int(np.sum(ef_vec[sample] == ef_ref))
    rows.append(
        (
            "`ejection_fraction` (regression, 202 candidates), all videos",
            t_ref * scale,
            t_vec,
            f"{same}/{len(sample)} identical",
        )
    )

    # The floor any exact regression method pays: every frame x candidate similarity (one GEMM).
    def similarity_gemm_only() -> None:
        for start in range(0, len(frames), 1 << 16):
            frames[start : start + (1 << 16)] @ ef_emb.T

    _, t_gemm = timed(similarity_gemm_only)
    rows.append(
        (
            "(floor) the frame x 202-candidate similarity GEMM alone",
            t_ref * scale,
            t_gemm,
            "no ranking: the most any exact EF method can reach",
        )
    )

    # binary top-k: video-mean index (FAISS IndexFlatIP) vs scoring everything then sorting
    t = time.perf_counter()
    # What the ingest service keeps per video (synthetic videos all have f frames, so a reshape).
    means = frames.reshape(n, f, DIM).mean(axis=1, dtype=np.float32)
    index = faiss.IndexFlatIP(DIM)
    index.add(means)
    t_build = time.perf_counter() - t
    query = mean_prompt_embedding(pacemaker, pace_emb)[None, :]
    (top_scores, top_ids), t_index = timed(index.search, query, args.top_k)

    def score_all_then_sort() -> np.ndarray:
        scores = score_binary(frames, offsets, pace_emb)
        return np.argsort(-scores, kind="stable")[: args.top_k]

    brute_ids, t_brute = timed(score_all_then_sort)
    overlap = len(set(top_ids[0].tolist()) & set(brute_ids.tolist()))
    score_err = float(np.max(np.abs(top_scores[0] - pace_vec[top_ids[0]])))
    rows.append(
        (
            f"`pacemaker` top-{args.top_k}: video-mean index vs score all + sort",
            t_brute,
            t_index,
            f"{overlap}/{args.top_k} same ids, score diff {score_err:.1e}; index build {t_build:.2f}s once",
        )
    )

    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print()
    print("| workload | per-video reference (s) | vectorised (s) | speed-up | check |")
    print("|---|---:|---:|---:|---|")
    for name, base, fast, check in rows:
        print(f"| {name} | {base:.2f} | {fast:.3f} | {base / fast:.1f}x | {check} |")
    print()
    print(
        f"# top-k row: 'reference' column = score everything + sort; 'vectorised' = one FAISS search. "
        f"Peak RSS {peak_gib:.2f} GiB."
    )


if __name__ == "__main__":
    main()
