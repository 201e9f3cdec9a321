"""The evaluation report: metrics.json, PNG plots (matplotlib, Agg backend) and an index.html showing them.

Needs the `eval` extra (matplotlib); metrics.py does not.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from echosearch.client.evaluation import metrics
from echosearch.client.evaluation.run import Evaluation


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit: the same on a server and in CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path.name


def plots(ev: Evaluation, out: Path) -> list[tuple[str, str]]:
    """Write the kind's plots into `out`; returns (title, file name) pairs."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    y, s, m = ev.labels, ev.scores, ev.metrics
    made: list[tuple[str, str]] = []
    if ev.task.kind == "binary":
        if m["roc_auc"] is not None:
            fpr, tpr = metrics.roc_curve(y, s)
            fig, ax = plt.subplots(figsize=(4.5, 4.5))
            ci = m["roc_auc_ci95"]
            label = f"AUC {m['roc_auc']:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
            ax.plot(fpr, tpr, label=label)
            ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
            ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC: {ev.task.name}")
            ax.legend(loc="lower right", fontsize=8)
            made.append(("ROC curve", _save(fig, out / "roc.png")))
            recall, precision = metrics.pr_curve(y, s)
            fig, ax = plt.subplots(figsize=(4.5, 4.5))
            ax.plot(recall, precision)
            ax.axhline(y.mean(), ls="--", c="grey", lw=0.8, label=f"prevalence {y.mean():.3f}")
            ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=f"PR: {ev.task.name}", ylim=(0, 1.02))
            ax.legend(loc="upper right", fontsize=8)
            made.append(("Precision-recall curve", _save(fig, out / "pr.png")))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        bins = np.histogram_bin_edges(s, bins=40)
        ax.hist(s[y == 0], bins=bins, alpha=0.6, label=f"negative (n={int((y == 0).sum())})")
        ax.hist(s[y == 1], bins=bins, alpha=0.6, label=f"positive (n={int((y == 1).sum())})")
        lo, hi = float(s.min()), float(s.max())
        near = max(hi - lo, 1e-6)
        if ev.task.threshold is not None:
            t = ev.task.threshold
            if lo - near <= t <= hi + near:
                ax.axvline(t, c="k", lw=1, label=f"task threshold {t:.3f}")
            else:  # drawn, it would squeeze every bar into a sliver
                ax.plot(
                    [], [], c="k", lw=1, label=f"task threshold {t:.3f} ({'above' if t > hi else 'below'} every score)"
                )
        if m["f1_optimal_threshold"] is not None:
            ax.axvline(
                m["f1_optimal_threshold"], c="r", ls="--", lw=1, label=f"F1-optimal {m['f1_optimal_threshold']:.3f}"
            )
        ax.set(xlabel="score", ylabel="videos", title="Scores by class")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count of videos: whole numbers
        ax.legend(fontsize=8)
        made.append(("Score histogram by class", _save(fig, out / "score_histogram.png")))
    elif ev.task.kind == "regression":
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(y, s, s=6, alpha=0.5)
        lo, hi = float(min(y.min(), s.min())), float(max(y.max(), s.max()))
        ax.plot([lo, hi], [lo, hi], c="k", lw=1, label="identity")
        ax.set(xlabel="label", ylabel="predicted", title=f"{ev.task.name}: predicted vs label")
        ax.legend(fontsize=8)
        made.append(("Predicted vs label", _save(fig, out / "scatter.png")))
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.scatter((y + s) / 2, s - y, s=6, alpha=0.5)
        ax.axhline(m["bias"], c="k", lw=1, label=f"bias {m['bias']:.2f}")
        if m["limits_of_agreement"]:
            for v in m["limits_of_agreement"]:
                ax.axhline(v, c="r", ls="--", lw=1)
        ax.set(xlabel="mean of label and prediction", ylabel="prediction - label", title="Bland-Altman")
        ax.legend(fontsize=8)
        made.append(("Bland-Altman", _save(fig, out / "bland_altman.png")))
    else:
        matrix = np.asarray(m["confusion_matrix"])
        names = [m["category_labels"].get(str(c), str(c)) for c in m["categories"]]
        fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(names), 1 + 0.6 * len(names)))
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > matrix.max() / 2 else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set(xlabel="predicted", ylabel="label", title=f"{ev.task.name}: confusion matrix")
        made.append(("Confusion matrix", _save(fig, out / "confusion.png")))
    return made


def _fmt(v: object, escape: bool = True) -> str:
    if v is None:
        return "undefined"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and v and all(isinstance(x, float) for x in v):
        return " – ".join(f"{x:.4g}" for x in v)
    return html.escape(str(v)) if escape else str(v)


SUMMARY_FIELDS = {
    "binary": ("n", "positives", "negatives", "roc_auc", "roc_auc_ci95", "threshold", "f1_optimal_threshold"),
    "regression": ("n", "mae", "rmse", "r2", "pearson_r", "bias", "limits_of_agreement"),
    "categorical": ("n", "accuracy", "macro_f1", "mae_ordinal"),
}


def summary_rows(m: dict, *, escape: bool = True) -> list[tuple[str, str]]:
    """(name, formatted value) rows of the headline metrics: HTML-escaped for index.html and the web UI,
    plain (`escape=False`) for the CLI's table."""
    rows = [(k, _fmt(m.get(k), escape)) for k in SUMMARY_FIELDS[m["kind"]]]
    for where in ("at_threshold", "at_f1_optimal_threshold"):
        sub = m.get(where)
        if sub:
            for k in ("sensitivity", "specificity", "ppv", "npv", "f1"):
                rows.append((f"{k} ({where.replace('at_', 'at ').replace('_', ' ')})", _fmt(sub[k], escape)))
    rows.append(("labelled rows", str(m["labelled_rows"])))
    rows.append(("labels missing (empty/NaN)", str(m["labels_missing"])))
    rows.append(("labels naming unknown videos", str(m["unknown_videos"]["count"])))
    return rows


def write_report(ev: Evaluation, out: Path) -> Path:
    """metrics.json, the plots and index.html into `out`; returns the index.html path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    made = plots(ev, out)
    m = dict(ev.metrics, plots=[name for _, name in made])
    (out / "metrics.json").write_text(json.dumps(m, indent=2, allow_nan=False) + "\n")
    if ev.unknown_keys:
        (out / "unknown_keys.txt").write_text("\n".join(ev.unknown_keys) + "\n")
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in summary_rows(m))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in m.get("notes", []))
    unknown = ""
    if ev.unknown_keys:
        shown = ", ".join(html.escape(k) for k in ev.unknown_keys[:50])
        more = " …; all in <a href='unknown_keys.txt'>unknown_keys.txt</a>" if len(ev.unknown_keys) > 50 else ""
        unknown = f"<p>Labels naming no stored video ({len(ev.unknown_keys)}): {shown}{more}</p>"
    figures = "".join(
        f"<figure><img src='{n}' alt='{html.escape(t)}'><figcaption>{html.escape(t)}</figcaption></figure>"
        for t, n in made
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation: {html.escape(ev.task.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.2em .8em;border-bottom:1px solid #ddd}}figure{{display:inline-block;margin:1em}}
img{{max-width:32em}}</style></head><body>
<h1>Evaluation of task <code>{html.escape(ev.task.name)}</code> ({html.escape(ev.task.kind)})</h1>
<p>Labels matched by <code>{html.escape(ev.key)}</code>. Metrics: <a href="metrics.json">metrics.json</a>.</p>
<table>{rows}</table><ul>{notes}</ul>{unknown}
{figures}
</body></html>
"""
    path = out / "index.html"
    path.write_text(page)
    return path
