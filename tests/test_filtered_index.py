"""Filtered search and tombstoned deletes on the CPU FAISS index: exact where the docs say so."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echosearch.server.storage.frame_ids import frame_ids_for
from echosearch.server.storage.index import COMPACT_FRACTION, VectorIndex
from echosearch.server.storage.snapshots import read_index, write_index

DIM = 16


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def videos(rng: np.random.Generator, n_videos: int):
    counts = rng.integers(1, 12, n_videos)
    vids = np.arange(1, n_videos + 1, dtype=np.int64)
    fids = np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)])
    return vids, counts, fids, unit(rng, len(fids))


def brute(fids, x, q, k, keep):
    s = q @ x[keep].T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), fids[keep][order]


def assert_topk_equal(got, want):
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    differ = got[1] != want[1]
    # ids may differ only where scores tie
    assert np.allclose(got[0][differ], want[0][differ], atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(
    n_videos=st.integers(1, 80),
    k=st.integers(1, 15),
    frac_deleted=st.floats(0, 0.4),
    frac_filter=st.floats(0.01, 1.0),
    strategy=st.sampled_from(["gather", "bitmap", "learned"]),
    seed=st.integers(0, 10_000),
)
def test_flat_filtered_and_deleted_is_exact(n_videos, k, frac_deleted, frac_filter, strategy, seed):
    rng = np.random.default_rng(seed)
    vids, counts, fids, x = videos(rng, n_videos)
    idx = VectorIndex(DIM, "Flat", use_gpu=False)
    idx.add(fids, x)
    if strategy != "learned":
        other = "bitmap" if strategy == "gather" else "gather"
        idx.flat_cost.per_row = {strategy: 1e-12, other: 1.0}
    gone = vids[rng.random(n_videos) < frac_deleted]
    for v in gone:  # one video at a time, as the store deletes
        idx.remove(fids[(fids >> 20) == v])
    chosen = vids[rng.random(n_videos) < frac_filter]
    keep_vid = np.isin(vids, chosen) & ~np.isin(vids, gone)
    q = unit(rng, 3)
    lo = chosen << 20
    got = idx.search(q, k, ranges=(lo, lo + counts[np.isin(vids, chosen)]))
    keep = np.isin(fids >> 20, vids[keep_vid])
    kk = min(k, int(keep.sum()))
    assert got[1].shape[1] == kk
    if kk:
        assert_topk_equal(got, brute(fids, x, q, kk, keep))
    alive = ~np.isin(fids >> 20, gone)
    kk = min(k, int(alive.sum()))
    if kk:
        assert_topk_equal(idx.search(q, k), brute(fids, x, q, kk, alive))


def test_deletes_tombstone_then_compact_and_persist(tmp_path: Path):
    rng = np.random.default_rng(0)
    vids, counts, fids, x = videos(rng, 100)
    idx = VectorIndex(DIM, "Flat", use_gpu=False)
    idx.add(fids, x)
    stored = idx._index.ntotal
    removed = 0
    for v in vids[:10]:
        removed += idx.remove(fids[(fids >> 20) == v])
    assert idx._index.ntotal == stored and idx.ntotal == stored - removed  # tombstoned, not moved
    write_index(idx, tmp_path / "f.faiss")
    back = read_index(tmp_path / "f.faiss", "Flat", use_gpu=False, tombstones=idx.tombstones())
    assert set(back.ids().tolist()) == set(idx.ids().tolist())
    for v in vids[10:40]:
        idx.remove(fids[(fids >> 20) == v])
    assert idx._rows.dead <= COMPACT_FRACTION * idx._rows.n  # compacted on the way
    assert idx._index.ntotal < stored
    alive = ~np.isin(fids >> 20, vids[:40])
    q = unit(rng, 2)
    assert_topk_equal(idx.search(q, 5), brute(fids, x, q, 5, alive))
    np.testing.assert_array_equal(idx.reconstruct(fids[alive][:3]), x[alive][:3])


@pytest.mark.parametrize("factory", ["IVF8,Flat", "HNSW16"])
def test_ann_filtered_small_candidate_sets_are_exact(factory):
    rng = np.random.default_rng(1)
    vids, counts, fids, x = videos(rng, 300)
    idx = VectorIndex(DIM, factory, use_gpu=False, nprobe=1, efsearch=16)
    idx.add(fids, x)
    assert not idx.exact_fallback and idx.exact_storage
    idx.ann_cost.per_row = {"exact": 1e-12, "index": 1.0, "postfilter": 1.0}  # what a small candidate set measures
    idx.remove(fids[(fids >> 20) == 3])
    chosen = vids[::9]
    lo = chosen << 20
    q = unit(rng, 4)
    keep = np.isin(fids >> 20, chosen) & ((fids >> 20) != 3)
    assert_topk_equal(idx.search(q, 10, ranges=(lo, lo + (1 << 20))), brute(fids, x, q, 10, keep))
    idx.ann_cost.per_row = {"exact": 1.0, "index": 1e-12, "postfilter": 1.0}  # the index's own filtered search
    _, ids = idx.search(q, 10, ranges=(lo, lo + (1 << 20)))
    assert np.isin(ids[ids >= 0], fids[keep]).all()
    if factory.startswith("IVF"):  # nprobe=1 holds few candidates: it probes wider instead of answering short
        assert (ids >= 0).all()


def test_filter_cost_model_learns_from_timings():
    rng = np.random.default_rng(2)
    vids, counts, fids, x = videos(rng, 2000)
    idx = VectorIndex(DIM, "Flat", use_gpu=False)
    idx.add(fids, x)
    lo = vids << 20
    for sel in (slice(None, None, 2), slice(None, 100)):
        idx.search(unit(rng, 1), 5, ranges=(lo[sel], lo[sel] + (1 << 20)))
    assert idx.flat_cost._measured  # timings replaced the priors


def test_gpu_mirror_overfetches_past_tombstones():
    """The FAISS GPU mirror keeps tombstoned rows; a CPU clone stands in for it here."""
    rng = np.random.default_rng(3)
    vids, counts, fids, x = videos(rng, 60)
    idx = VectorIndex(DIM, "Flat", use_gpu=False)
    idx.add(fids, x)
    for v in vids[:5]:
        idx.remove(fids[(fids >> 20) == v])
    assert idx._rows.dead > 0
    clone = faiss.clone_index(idx._inner())  # like index_cpu_to_all_gpus: every row, dead ones included
    idx._gpu_mirror = lambda: clone
    q = unit(rng, 4)
    alive = ~np.isin(fids >> 20, vids[:5])
    assert_topk_equal(idx.search(q, 7), brute(fids, x, q, 7, alive))


# ---- issue 18 item 4: the ANN planner keeps recall at every selectivity -----------------------------------

PLANNER_DIM = 64


@pytest.fixture(scope="module")
def clustered_ivf():
    """10,000 videos x 5 frames of clustered unit vectors in a trained IVF256,Flat (nprobe 32 by default)."""
    rng = np.random.default_rng(7)
    n_videos, fpv = 10_000, 5
    centers = rng.standard_normal((256, PLANNER_DIM)).astype(np.float32)
    x = centers[rng.integers(0, 256, n_videos * fpv)] + 0.6 * rng.standard_normal((n_videos * fpv, PLANNER_DIM))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    vids = np.arange(1, n_videos + 1, dtype=np.int64)
    fids = ((vids[:, None] << 20) + np.arange(fpv)).reshape(-1)
    idx = VectorIndex(PLANNER_DIM, "IVF256,Flat", use_gpu=False)
    idx.add(fids, x)
    assert not idx.exact_fallback
    q = centers[rng.integers(0, 256, 40)] + 0.9 * rng.standard_normal((40, PLANNER_DIM))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    return idx, vids, fids, x, q


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum()) for f, t in zip(found, truth)]))


@pytest.mark.parametrize("selectivity", [0.001, 0.01, 0.1, 1.0])
@pytest.mark.parametrize("forced", [None, "postfilter", "index"])
def test_planner_recall_at_every_selectivity(clustered_ivf, selectivity, forced):
    idx, vids, fids, x, q = clustered_ivf
    rng = np.random.default_rng(int(selectivity * 1000))
    chosen = np.sort(rng.choice(vids, max(1, int(len(vids) * selectivity)), replace=False))
    keep = np.isin(fids >> 20, chosen)
    if forced is not None:  # hold the cost model so the plan is the forced one (where it is eligible)
        idx.ann_cost.per_row = {"exact": 1e9, "index": 1e9, "postfilter": 1e9, forced: 1e-12}
        idx._unfiltered_s.clear()
    else:
        idx.ann_cost.per_row = dict(ann_filtered_priors())
    lo = chosen << 20
    _, found = idx.search(q, 10, ranges=(lo, lo + (1 << 20)))
    truth = brute(fids, x, q, 10, keep)[1]
    assert np.isin(found[found >= 0], fids[keep]).all()  # never an id outside the filter
    plan = idx.last_plan
    assert plan is not None and plan.candidates == keep.sum()
    if forced is not None and plan.strategy != forced:
        assert forced == "postfilter" and plan.fetch_k == 0  # too many hits to over-fetch: not eligible
        return
    assert _recall(found, truth) >= 0.95, (plan, _recall(found, truth))


def ann_filtered_priors() -> dict[str, float]:
    from echosearch.server.storage.ann_filtered import STRATEGY_PRIORS

    return STRATEGY_PRIORS


def test_search_explain_names_the_plan_over_grpc(server, client, capsys):
    """`search --explain` and the reply's plan say how the backends answered (issue 18 item 4)."""
    from echosearch.client import VideoFilter, VideoMetadata
    from echosearch.client.cli import main
    from tests.fixtures.synthetic import make_video

    for seed in range(3):
        client.ingest(make_video(seed=500 + seed, frames=8), metadata=VideoMetadata(tags={"explain": str(seed % 2)}))
    plain = client.search_by_text("a heart", k=3)
    assert plain.plan and "the whole index" in plain.plan[0]
    filtered = client.search_by_text("a heart", k=3, filter=VideoFilter(tags={"explain": "1"}))
    assert any("exact over" in line and "candidate vectors" in line for line in filtered.plan), filtered.plan
    assert main(["--server", server.address, "search", "a heart", "--filter", "tag.explain=0", "--explain"]) == 0
    err = capsys.readouterr().err
    assert "plan: Flat: exact over" in err


@pytest.fixture(scope="module")
def clustered_ivf_sq8(clustered_ivf):
    """The same vectors in a trained IVF256,SQ8: its lists hold 8-bit codes, not the vectors."""
    _, vids, fids, x, q = clustered_ivf
    idx = VectorIndex(PLANNER_DIM, "IVF256,SQ8", use_gpu=False)
    idx.add(fids, x)
    assert not idx.exact_fallback and not idx.exact_storage
    return idx, vids, fids, x, q


@pytest.mark.parametrize("selectivity", [0.001, 0.01])
def test_a_small_filter_on_codes_scans_the_candidates_codes(clustered_ivf_sq8, selectivity):
    """Issue 18: on SQ/PQ lists a small filter decodes its candidates' codes rather than probing every list
    with a selector (at 10M frames a 1 % filter scanned all 10M codes): recall is the codes' own."""
    idx, vids, fids, x, q = clustered_ivf_sq8
    idx.ann_cost.per_row = dict(ann_filtered_priors())
    rng = np.random.default_rng(int(selectivity * 1000) + 1)
    chosen = np.sort(rng.choice(vids, max(1, int(len(vids) * selectivity)), replace=False))
    keep = np.isin(fids >> 20, chosen)
    lo = chosen << 20
    _, found = idx.search(q, 10, ranges=(lo, lo + (1 << 20)))
    plan = idx.last_plan
    assert plan.strategy == "exact" and plan.codes and "codes" in plan.describe()
    assert np.isin(found[found >= 0], fids[keep]).all()
    assert _recall(found, brute(fids, x, q, 10, keep)[1]) >= 0.95
