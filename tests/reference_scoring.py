"""Plain, per-video reference definitions of the scoring math (DESIGN.md), for tests and bench/score.py.

Written straight from echonet/echo_CLIP utils.py (``compute_binary_metric``,
``compute_regression_metric``), one video at a time, in torch. Two deliberate,
documented choices where the published code is underspecified:

- ties: ``torch.argsort(..., descending=True, stable=True)`` - equal similarities
  keep candidate order (the published call is unstable, so its tie order is arbitrary);
- fewer than 5 candidates: ``int(0.2 * C)`` is 0 and the published median fails;
  we take the first position (K = max(1, int(0.2 * C))).

Nothing here is vectorised across videos on purpose: it is the yardstick.
"""

from __future__ import annotations

import numpy as np
import torch


def reference_binary(video_emb: np.ndarray, prompt_emb: np.ndarray) -> float:
    """Mean over prompts, then over frames, of frame . prompt cosine, for one video (frames, D)."""
    v = torch.from_numpy(np.asarray(video_emb, dtype=np.float32))
    p = torch.from_numpy(np.asarray(prompt_emb, dtype=np.float32))
    per_frame_similarities = v @ p.T  # (frames, prompts)
    return float(per_frame_similarities.mean(dim=-1).mean(dim=-1))


def reference_regression(video_emb: np.ndarray, candidate_emb: np.ndarray, candidate_values: np.ndarray) -> float:
    """The published regression answer for one video (frames, D)."""
    v = torch.from_numpy(np.asarray(video_emb, dtype=np.float32))
    c = torch.from_numpy(np.asarray(candidate_emb, dtype=np.float32))
    per_frame_similarities = v @ c.T  # (frames, candidates)
    ranked = torch.argsort(per_frame_similarities, dim=-1, descending=True, stable=True)
    values = torch.as_tensor(np.asarray(candidate_values, dtype=np.float64))
    ranked_values = values[ranked]  # (frames, candidates)
    avg_ranked_values = ranked_values.float().mean(dim=0)  # (candidates,) float32, as published
    k = max(1, int(avg_ranked_values.shape[0] * 0.2))
    return float(avg_ranked_values[:k].median())  # torch: lower median


def reference_categorical_label(value: float, labels: dict[float, str]) -> str:
    """Nearest category's label, ties to the lower category (a plain loop)."""
    best_key, best_dist = None, None
    for key in sorted(labels):
        d = abs(value - key)
        if best_dist is None or d < best_dist:
            best_key, best_dist = key, d
    return labels[best_key]


def split_videos(frames: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Ragged (frames, offsets) -> one (n_i, D) array per video."""
    return [frames[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
