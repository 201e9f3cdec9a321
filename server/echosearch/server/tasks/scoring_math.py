"""Zero-shot scoring math, vectorised over many videos at once (DESIGN.md, "the model and the method").

Inputs everywhere: ``frames`` = the frame embeddings of V videos concatenated,
(F, D) float32; ``offsets`` = (V+1,) int64 prefix offsets, video i owns
``frames[offsets[i]:offsets[i+1]]``. Work is done in chunks of whole videos so
memory stays bounded (about ``chunk_rows x candidates x 16`` bytes).

Definitions (identical to echonet/echo_CLIP ``compute_binary_metric`` /
``compute_regression_metric``):

- binary: mean over prompts, then over frames, of ``frame . prompt``
  (= ``mean_frame . mean_prompt``).
- regression: per frame rank the candidates by similarity, descending; map ranks
  to candidate values; mean over frames (float32, as torch does); answer = lower
  median of the first ``int(0.2 * C)`` positions.
  Ties: candidates with exactly equal float32 similarity keep their candidate
  order (a *stable* descending sort); -0.0 equals +0.0; identical candidate
  embeddings always tie exactly. Deviation: the reference has no answer when
  ``int(0.2 * C) == 0`` (C < 5, e.g. a 3-prompt categorical task); we use the
  first position (K = max(1, int(0.2 * C))).
- categorical: the regression method over the category values; the label is the
  nearest category's (ties go to the lower category).

Videos with no frames score NaN.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from echosearch.tasks.spec import Task, TaskKind

DEFAULT_CHUNK_ROWS = 16384  # frames per chunk: 16k x 202 candidates x ~16 B ~ 53 MB of temporaries


@dataclass(frozen=True)
class TaskScores:
    """One task's answers for V videos."""

    score: np.ndarray  # (V,) float64: binary = mean cosine; regression/categorical = the predicted value
    value: np.ndarray | None  # (V,) float64 regression/categorical value (same numbers as score)
    label: list[str] | None  # categorical: nearest category's label ("" for a video without frames)
    decision: np.ndarray | None  # (V,) bool, score > threshold, when the task has a threshold


def check_offsets(frames: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Validate ragged offsets against frames; returns them as int64."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if frames.ndim != 2:
        raise ValueError(f"frames must be (F, D), got shape {frames.shape}")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != frames.shape[0]:
        raise ValueError(f"offsets must be (V+1,) from 0 to F={frames.shape[0]}")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must be non-decreasing")
    return offsets


def top_fraction(num_candidates: int) -> int:
    """How many ranked positions the median is taken over: int(0.2 * C), at least 1."""
    return max(1, int(num_candidates * 0.2))  # same float expression as the reference


def score_binary(frames: np.ndarray, offsets: np.ndarray, prompt_emb: np.ndarray) -> np.ndarray:
    """(V,) mean over prompts and frames of the frame/prompt cosine."""
    offsets = check_offsets(frames, offsets)
    mean_prompt = np.asarray(prompt_emb, dtype=np.float64).mean(axis=0).astype(np.float32)
    counts = np.diff(offsets)
    sums = np.zeros(len(counts), dtype=np.float64)
    for lo, hi, f0, f1 in _chunks(offsets, DEFAULT_CHUNK_ROWS):
        # One gemv per chunk; per-video sums accumulate in float64.
        sims = frames[f0:f1] @ mean_prompt
        video_of_frame = np.repeat(np.arange(hi - lo), counts[lo:hi])
        sums[lo:hi] = np.bincount(video_of_frame, weights=sims, minlength=hi - lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def score_regression(
    frames: np.ndarray,
    offsets: np.ndarray,
    candidate_emb: np.ndarray,
    candidate_values: np.ndarray,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> np.ndarray:
    """(V,) reference regression answer (see module docstring), float32-exact values as float64."""
    offsets = check_offsets(frames, offsets)
    cand = np.ascontiguousarray(candidate_emb, dtype=np.float32)
    values = np.asarray(candidate_values, dtype=np.float64)
    c = cand.shape[0]
    if values.shape != (c,) or c == 0:
        raise ValueError(f"need one value per candidate embedding ({c} embeddings, {values.shape} values)")
    # Duplicate candidate embeddings must tie exactly; BLAS may round identical columns
    # differently, so compute each distinct embedding once and copy the column.
    uniq, inverse = np.unique(cand, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    dedupe = len(uniq) < c
    k = top_fraction(c)
    median_pos = (k - 1) // 2  # torch's median of an even count is the lower middle
    counts = np.diff(offsets)
    out = np.full(len(counts), np.nan, dtype=np.float64)
    # Low 32 bits of a key: C-1-index, so among equal similarities the lower index ranks first.
    tiebreak = (c - 1 - np.arange(c, dtype=np.int64))[None, :]
    for lo, hi, f0, f1 in _chunks(offsets, chunk_rows):
        if f1 == f0:
            continue
        sims = frames[f0:f1] @ (uniq if dedupe else cand).T
        if dedupe:
            sims = sims[:, inverse]
        ranked_idx = _top_k_stable_desc(sims, k, tiebreak)
        ranked_vals = values[ranked_idx]  # (rows, K)
        chunk_counts = counts[lo:hi]
        nonempty = np.flatnonzero(chunk_counts)
        starts = (offsets[lo:hi] - f0)[nonempty]
        sums = np.add.reduceat(ranked_vals, starts, axis=0)  # (videos, K), exact for integer values
        # The order statistic commutes with the monotone x -> float32(x / n), so select on sums.
        picked = np.partition(sums, median_pos, axis=1)[:, median_pos]
        out[lo + nonempty] = (picked / chunk_counts[nonempty]).astype(np.float32)
    return out


def _top_k_stable_desc(sims: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """Indices of the first k candidates of a stable descending argsort, per row.

    Each float32 similarity becomes an order-preserving int32; packing it above the
    tie-break makes every key distinct, so an (unstable) partition + sort gives the
    stable order without a full argsort.
    """
    sims = np.ascontiguousarray(sims, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0: equal, must tie
    bits = sims.view(np.int32)
    bits ^= (bits >> 31) & 0x7FFFFFFF  # negative floats: flip magnitude bits so int order = float order
    keys = bits.astype(np.int64)
    keys <<= 32
    keys |= tiebreak
    c = keys.shape[1]
    if k < c:
        keys = np.partition(keys, c - k, axis=1)[:, c - k :]
    keys = np.sort(keys, axis=1)[:, ::-1]
    return (c - 1) - (keys & 0xFFFFFFFF)


def _chunks(offsets: np.ndarray, chunk_rows: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (first video, end video, first frame, end frame) of consecutive whole-video chunks."""
    v = len(offsets) - 1
    lo = 0
    while lo < v:
        # Largest hi with offsets[hi] - offsets[lo] <= chunk_rows, but always at least one video.
        hi = int(np.searchsorted(offsets, offsets[lo] + chunk_rows, side="right")) - 1
        hi = min(max(hi, lo + 1), v)
        yield lo, hi, int(offsets[lo]), int(offsets[hi])
        lo = hi


def mean_prompt_embedding(task: Task, text_emb: np.ndarray) -> np.ndarray:
    """(D,) float32 mean of a binary task's prompt embeddings: score = mean_frame . this."""
    if task.kind is not TaskKind.BINARY:
        raise ValueError(f"task {task.name!r} is {task.kind.value}; only binary tasks have a mean prompt")
    emb = np.asarray(text_emb, dtype=np.float64)
    if emb.shape[0] != len(task.prompts):
        raise ValueError(f"task {task.name!r}: {emb.shape[0]} embeddings for {len(task.prompts)} prompts")
    return emb.mean(axis=0).astype(np.float32)


def nearest_labels(task: Task, values: np.ndarray) -> list[str]:
    """Label of the nearest category for each value (ties -> the lower category; NaN -> "")."""
    cats = task.categories()
    vals = np.asarray(values, dtype=np.float64)
    # argmin takes the first minimum and cats is ascending, so ties go to the lower category.
    nearest = np.argmin(np.abs(vals[:, None] - cats[None, :]), axis=1)
    return ["" if np.isnan(v) else task.label_for(cats[i]) for v, i in zip(vals, nearest, strict=True)]


def score_task(task: Task, frames: np.ndarray, offsets: np.ndarray, text_emb: np.ndarray) -> TaskScores:
    """Score one task over V videos; ``text_emb`` rows align with ``task.candidate_texts()``."""
    offsets = check_offsets(frames, offsets)
    text_emb = np.asarray(text_emb, dtype=np.float32)
    n_texts = len(task.candidate_texts())
    if text_emb.ndim != 2 or text_emb.shape[0] != n_texts or text_emb.shape[1] != frames.shape[1]:
        raise ValueError(
            f"task {task.name!r}: text embeddings {text_emb.shape} do not match {n_texts} texts x dim {frames.shape[1]}"
        )
    if task.aggregate is not None:
        score = _custom_aggregate(task, frames, offsets, text_emb)
    elif task.kind is TaskKind.BINARY:
        score = score_binary(frames, offsets, text_emb)
    else:
        score = score_regression(frames, offsets, text_emb, task.candidate_values())
    return task_scores(task, score)


def task_scores(task: Task, score: np.ndarray) -> TaskScores:
    """Wrap per-video scores with the task's value, label and decision (after a stored task's calibration)."""
    if task.calibration is not None:  # a stored task's site recalibration (regression only)
        a, b = task.calibration
        score = a * score + b
    if task.kind is TaskKind.BINARY:
        value, label = None, None
    else:
        value = score
        label = nearest_labels(task, score) if task.kind is TaskKind.CATEGORICAL else None
    decision = None
    if task.threshold is not None:
        with np.errstate(invalid="ignore"):
            decision = score > task.threshold  # the published code uses '>'
    return TaskScores(score=score, value=value, label=label, decision=decision)


def _custom_aggregate(task: Task, frames: np.ndarray, offsets: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Run a plugin's own aggregation, one video at a time (its signature is per video)."""
    assert task.aggregate is not None
    out = np.full(len(offsets) - 1, np.nan, dtype=np.float64)
    for i in range(len(offsets) - 1):
        f0, f1 = offsets[i], offsets[i + 1]
        if f1 > f0:
            out[i] = float(task.aggregate(frames[f0:f1] @ text_emb.T, task))
    return out
