"""Evaluation metrics of task scores against labels — numpy only (no torch, no scikit-learn).

The one implementation behind `echosearch evaluate`, the web UI's evaluation page and
`--calibrate`. Undefined quantities (AUC with one class, PPV with no positive call) are
None, never a made-up number, and say why in `notes`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
# Fewer labels than this (of either class for a binary task, videos for a regression task) give no interval:
# a bootstrap over 1 positive of 3 returns [1.0, 1.0], a certainty the labels cannot give.
MIN_LABELS_FOR_CI = 10


def _div(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def _roc_auc_weighted(ranks: np.ndarray, y: np.ndarray, weights: np.ndarray, n_levels: int) -> float:
    """ROC AUC (ties count a half) of a weighted sample; `ranks` are dense score levels 0..n_levels-1."""
    w_pos = np.bincount(ranks, weights=weights * y, minlength=n_levels)
    w_neg = np.bincount(ranks, weights=weights * (1 - y), minlength=n_levels)
    total_pos, total_neg = w_pos.sum(), w_neg.sum()
    if total_pos == 0 or total_neg == 0:
        return math.nan
    neg_below = np.cumsum(w_neg) - w_neg  # negatives with a strictly lower score
    return float((w_pos * (neg_below + 0.5 * w_neg)).sum() / (total_pos * total_neg))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of binary labels `y` (0/1) for `score`; None when only one class is present."""
    y = np.asarray(y, dtype=np.float64)
    levels, ranks = np.unique(np.asarray(score, dtype=np.float64), return_inverse=True)
    auc = _roc_auc_weighted(ranks, y, np.ones(len(y)), len(levels))
    return None if math.isnan(auc) else auc


def bootstrap_auc_ci(
    y: np.ndarray, score: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """Percentile 95 % CI of the ROC AUC over `resamples` bootstrap resamples (seeded: reproducible).

    Resamples drawing a single class are skipped; None when the AUC itself is undefined.
    A resample is a multiplicity vector over the samples sorted by score (which sample is drawn
    is all that matters), so each one costs a few O(n) passes instead of a sort.
    """
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0 or y.min() == y.max():
        return None
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(score, kind="stable")
    y_sorted = y[order]
    levels, ranks = np.unique(score[order], return_inverse=True)
    ties = len(levels) < len(y)
    rng = np.random.default_rng(seed)
    n = len(y)
    aucs = np.empty(resamples)
    for i in range(resamples):
        w = np.bincount(rng.integers(0, n, n, dtype=np.int64), minlength=n).astype(np.float64)
        if ties:
            aucs[i] = _roc_auc_weighted(ranks, y_sorted, w, len(levels))
            continue
        w_pos = w * y_sorted
        w_neg = w - w_pos
        total_pos, total_neg = w_pos.sum(), w_neg.sum()
        if total_pos == 0 or total_neg == 0:
            aucs[i] = math.nan
            continue
        neg_below = np.cumsum(w_neg) - w_neg  # no ties: every earlier negative scores strictly lower
        # multiply+sum, not `@`: a threaded BLAS dot is slower on a busy machine than one pass here
        aucs[i] = float(np.multiply(w_pos, neg_below).sum()) / (total_pos * total_neg)
    aucs = aucs[~np.isnan(aucs)]
    if len(aucs) == 0:
        return None
    alpha = (1 - CI_LEVEL) / 2
    lo, hi = np.quantile(aucs, [alpha, 1 - alpha])
    return float(lo), float(hi)


def confusion_at(y: np.ndarray, decision: np.ndarray) -> dict[str, int]:
    """tp/fp/tn/fn of boolean decisions against 0/1 labels."""
    y = np.asarray(y).astype(bool)
    d = np.asarray(decision).astype(bool)
    return {
        "tp": int((y & d).sum()),
        "fp": int((~y & d).sum()),
        "tn": int((~y & ~d).sum()),
        "fn": int((y & ~d).sum()),
    }


def rates(c: dict[str, int]) -> dict[str, float | None]:
    """Sensitivity, specificity, PPV, NPV, F1 and accuracy from a confusion count (None when undefined)."""
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    return {
        "sensitivity": _div(tp, tp + fn),
        "specificity": _div(tn, tn + fp),
        "ppv": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "accuracy": _div(tp + tn, tp + tn + fp + fn),
    }


def f1_optimal_threshold(y: np.ndarray, score: np.ndarray) -> tuple[float | None, float | None]:
    """(threshold, F1) maximising F1 of the decision `score > threshold`; the threshold sits midway between
    the lowest score called positive and the next lower score. (None, None) without positives."""
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    total_pos = y.sum()
    if len(y) == 0 or total_pos == 0:
        return None, None
    levels, ranks = np.unique(score, return_inverse=True)
    pos = np.bincount(ranks, weights=y, minlength=len(levels))[::-1]
    cnt = np.bincount(ranks, minlength=len(levels))[::-1].astype(np.float64)
    tp = np.cumsum(pos)  # calling the top 1, 2, ... score levels positive
    called = np.cumsum(cnt)
    f1 = 2 * tp / (called + total_pos)
    best = int(np.argmax(f1))
    desc = levels[::-1]
    lowest_called = desc[best]
    below = desc[best + 1] if best + 1 < len(desc) else lowest_called - 1e-6
    return float((lowest_called + below) / 2), float(f1[best])


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over decreasing score levels, starting at (0, 0)."""
    y = np.asarray(y, dtype=np.float64)
    levels, ranks = np.unique(np.asarray(score, dtype=np.float64), return_inverse=True)
    pos = np.bincount(ranks, weights=y, minlength=len(levels))[::-1]
    neg = np.bincount(ranks, weights=1 - y, minlength=len(levels))[::-1]
    tpr = np.concatenate([[0.0], np.cumsum(pos) / max(pos.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(neg) / max(neg.sum(), 1)])
    return fpr, tpr


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) over decreasing score levels."""
    y = np.asarray(y, dtype=np.float64)
    levels, ranks = np.unique(np.asarray(score, dtype=np.float64), return_inverse=True)
    pos = np.bincount(ranks, weights=y, minlength=len(levels))[::-1]
    cnt = np.bincount(ranks, minlength=len(levels))[::-1]
    tp, called = np.cumsum(pos), np.cumsum(cnt)
    return tp / max(pos.sum(), 1), tp / called


def binary_metrics(
    y: np.ndarray,
    score: np.ndarray,
    threshold: float | None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Binary task: AUC with bootstrap CI, rates at the task's threshold, and the F1-optimal threshold."""
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    notes: list[str] = []
    n_pos = int(y.sum())
    out: dict[str, Any] = {"n": len(y), "positives": n_pos, "negatives": len(y) - n_pos}
    out["roc_auc"] = roc_auc(y, score)
    if out["roc_auc"] is None:
        notes.append(f"ROC AUC is undefined: the labels hold only one class ({n_pos} positive of {len(y)})")
    n_neg = len(y) - n_pos
    ci = None
    if min(n_pos, n_neg) >= MIN_LABELS_FOR_CI:
        ci = bootstrap_auc_ci(y, score, resamples=resamples, seed=seed)
    elif out["roc_auc"] is not None:
        notes.append(
            f"no 95 % CI of the ROC AUC: the labels have {n_pos} positive and {n_neg} negative videos, and a "
            f"bootstrap interval needs at least {MIN_LABELS_FOR_CI} of each class"
        )
    out["roc_auc_ci95"] = list(ci) if ci else None
    out["bootstrap"] = {"resamples": resamples, "seed": seed, "method": "percentile"}
    out["threshold"] = threshold
    if threshold is not None:
        c = confusion_at(y, score > threshold)
        out["at_threshold"] = {**c, **rates(c)}
    else:
        out["at_threshold"] = None
        notes.append("the task has no threshold: rates are given at the F1-optimal threshold only")
    best_t, best_f1 = f1_optimal_threshold(y, score)
    out["f1_optimal_threshold"] = best_t
    if best_t is not None:
        c = confusion_at(y, score > best_t)
        out["at_f1_optimal_threshold"] = {**c, **rates(c)}
    else:
        out["at_f1_optimal_threshold"] = None
    out["notes"] = notes
    return out


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Regression task: MAE, RMSE, R², Pearson r, bias (pred − label) with 95 % limits of agreement."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    n = len(y)
    notes: list[str] = []
    err = pred - y
    out: dict[str, Any] = {"n": n}
    out["mae"] = float(np.abs(err).mean()) if n else None
    out["rmse"] = float(np.sqrt((err**2).mean())) if n else None
    ss_tot = float(((y - y.mean()) ** 2).sum()) if n else 0.0
    out["r2"] = 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else None
    if n and ss_tot == 0:
        notes.append("R² and Pearson r are undefined: every label has the same value")
    sy, sp = (float(y.std()), float(pred.std())) if n else (0.0, 0.0)
    out["pearson_r"] = float(((y - y.mean()) * (pred - pred.mean())).mean() / (sy * sp)) if sy > 0 and sp > 0 else None
    if n and sp == 0:
        notes.append("Pearson r is undefined: every prediction has the same value")
    out["bias"] = float(err.mean()) if n else None
    sd = float(err.std(ddof=1)) if n >= MIN_LABELS_FOR_CI else None
    out["limits_of_agreement"] = [out["bias"] - 1.96 * sd, out["bias"] + 1.96 * sd] if sd is not None else None
    if n and sd is None:
        notes.append(
            f"no 95 % limits of agreement: the labels cover {n} videos, and the interval needs at least "
            f"{MIN_LABELS_FOR_CI}"
        )
    out["notes"] = notes
    return out


def categorical_metrics(y: np.ndarray, pred: np.ndarray, categories: np.ndarray) -> dict[str, Any]:
    """Categorical task: accuracy, macro-F1 over the categories present, confusion matrix, ordinal MAE."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    cats = np.unique(np.concatenate([np.asarray(categories, dtype=np.float64), y, pred]))
    index = {float(c): i for i, c in enumerate(cats)}
    matrix = np.zeros((len(cats), len(cats)), dtype=np.int64)
    if len(y):
        np.add.at(matrix, (np.searchsorted(cats, y), np.searchsorted(cats, pred)), 1)
    present = [index[float(c)] for c in np.unique(np.concatenate([y, pred]))]
    f1s = []
    for i in present:
        tp = matrix[i, i]
        fp = matrix[:, i].sum() - tp
        fn = matrix[i, :].sum() - tp
        f1s.append(2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else 0.0)
    return {
        "n": len(y),
        "accuracy": float((y == pred).mean()) if len(y) else None,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "categories": [float(c) for c in cats],
        "confusion_matrix": matrix.tolist(),  # rows: label, columns: prediction
        "mae_ordinal": float(np.abs(pred - y).mean()) if len(y) else None,
        "notes": [],
    }


def linear_recalibration(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares fit label ≈ a·pred + b (for a site-calibrated regression task)."""
    pred = np.asarray(pred, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2 or float(pred.std()) == 0.0:
        raise ValueError("a linear recalibration needs at least two labelled videos with different predictions")
    a, b = np.polyfit(pred, y, 1)
    return float(a), float(b)
