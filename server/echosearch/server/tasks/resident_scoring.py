"""Task scoring in torch over frames already resident on a device (the store's matrix backend).

The same definitions as scoring_math.py (binary means; the regression per-frame ranking with a
stable descending order and the lower median of the first int(0.2·C) positions), computed chunk
by chunk of whole videos on the matrix's device. On CPU fp32 the answers equal scoring_math's.
"""

from __future__ import annotations

import numpy as np
import torch

from echosearch.server.tasks.scoring_math import DEFAULT_CHUNK_ROWS, _chunks, top_fraction
from echosearch.tasks.spec import Task, TaskKind

CUDA_CHUNK_ROWS = 1 << 17


def resident_scorer(task: Task, text_emb: np.ndarray):
    """A `score(frames_of, rows, offsets)` for Store.score_resident, or None for a custom aggregation."""
    if task.aggregate is not None:
        return None  # a plugin's own per-video function runs on the CPU, from the catalog
    if task.kind is TaskKind.BINARY:
        return lambda frames_of, rows, offsets: binary_scores(frames_of, rows, offsets, text_emb)
    values = task.candidate_values()
    return lambda frames_of, rows, offsets: regression_scores(frames_of, rows, offsets, text_emb, values)


def binary_scores(frames_of, rows: torch.Tensor, offsets: np.ndarray, prompt_emb: np.ndarray) -> np.ndarray:
    """(V,) mean over prompts and frames of frame·prompt; `frames_of(rows)` gives fp32 frame rows."""
    mean_prompt = np.asarray(prompt_emb, dtype=np.float64).mean(axis=0).astype(np.float32)
    p = torch.from_numpy(mean_prompt).to(rows.device)
    counts = np.diff(offsets)
    sums = np.zeros(len(counts), dtype=np.float64)
    for lo, hi, f0, f1 in _chunks(offsets, DEFAULT_CHUNK_ROWS * 4):
        if f1 == f0:
            continue
        sims = (frames_of(rows[f0:f1]) @ p).double()
        owner = torch.from_numpy(np.repeat(np.arange(hi - lo), counts[lo:hi])).to(rows.device)
        part = torch.zeros(hi - lo, dtype=torch.float64, device=rows.device).index_add_(0, owner, sims)
        sums[lo:hi] = part.cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def regression_scores(
    frames_of,
    rows: torch.Tensor,
    offsets: np.ndarray,
    candidate_emb: np.ndarray,
    candidate_values: np.ndarray,
    *,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """(V,) regression answer per video, as scoring_math.score_regression defines it."""
    if chunk_rows is None:  # bigger chunks on a GPU: fewer launches; 128k x 202 int64 keys = 212 MB
        chunk_rows = CUDA_CHUNK_ROWS if rows.device.type == "cuda" else DEFAULT_CHUNK_ROWS
    cand = np.ascontiguousarray(candidate_emb, dtype=np.float32)
    values = np.asarray(candidate_values, dtype=np.float64)
    c = cand.shape[0]
    if values.shape != (c,) or c == 0:
        raise ValueError(f"need one value per candidate embedding ({c} embeddings, {values.shape} values)")
    dev = rows.device
    # identical candidate embeddings must tie exactly: score each distinct one once, copy the column
    uniq, inverse = np.unique(cand, axis=0, return_inverse=True)
    inverse_t = torch.from_numpy(inverse.reshape(-1)).to(dev)
    uniq_t = torch.from_numpy(uniq).to(dev)
    values_t = torch.from_numpy(values).to(dev)
    k = top_fraction(c)
    median_pos = (k - 1) // 2  # lower middle, as torch.median does
    tiebreak = (c - 1 - torch.arange(c, dtype=torch.int64, device=dev))[None, :]
    counts = np.diff(offsets)
    out = np.full(len(counts), np.nan, dtype=np.float64)
    for lo, hi, f0, f1 in _chunks(offsets, chunk_rows):
        if f1 == f0:
            continue
        sims = (frames_of(rows[f0:f1]) @ uniq_t.T)[:, inverse_t] + 0.0  # -0.0 -> +0.0: equal, must tie
        bits = sims.contiguous().view(torch.int32)
        bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # order-preserving int32 of each float32
        keys = (bits.to(torch.int64) << 32) | tiebreak
        top = torch.topk(keys, k, dim=1, sorted=True).values
        ranked_vals = values_t[(c - 1) - (top & 0xFFFFFFFF)]  # (rows, K)
        chunk_counts = counts[lo:hi]
        nonempty = np.flatnonzero(chunk_counts)
        owner = torch.from_numpy(np.repeat(np.arange(len(nonempty)), chunk_counts[nonempty])).to(dev)
        sums = torch.zeros((len(nonempty), k), dtype=torch.float64, device=dev).index_add_(0, owner, ranked_vals)
        picked = torch.kthvalue(sums, median_pos + 1, dim=1).values.cpu().numpy()
        out[lo + nonempty] = (picked / chunk_counts[nonempty]).astype(np.float32)
    return out
