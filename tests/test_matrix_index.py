"""The torch matrix backend on CPU: search equals FAISS Flat, task scores equal scoring_math.py."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from echosearch.server.storage.frame_ids import frame_ids_for
from echosearch.server.storage.matrix_index import MatrixFull, MatrixIndex
from echosearch.server.storage.positions import ranges_to_rows
from echosearch.server.tasks.resident_scoring import binary_scores, regression_scores
from echosearch.server.tasks.scoring_math import score_binary, score_regression

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def flat_reference(ids: np.ndarray, x: np.ndarray, q: np.ndarray, k: int, subset=None):
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1]))
    index.add_with_ids(x, ids)
    params = None if subset is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(subset))
    return index.search(q, k, params=params)


def assert_same_topk(got, want) -> None:
    """Equal scores; equal ids except where neighbouring scores tie."""
    gs, gi = got
    ws, wi = want
    np.testing.assert_allclose(gs, ws, rtol=1e-5, atol=1e-6)
    for row in range(len(gi)):
        for j in range(gi.shape[1]):
            if gi[row, j] != wi[row, j]:
                assert np.isclose(gs[row, j], ws[row, j], atol=1e-6)
                assert np.sum(np.isclose(ws[row], ws[row, j], atol=1e-6)) > 1, "ids differ without a tie"


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    k=st.integers(1, 20),
    nq=st.integers(1, 4),
    frac_removed=st.floats(0, 0.5),
    frac_subset=st.sampled_from([None, 0.01, 0.3, 1.0]),
    seed=st.integers(0, 10_000),
)
def test_search_matches_faiss_flat(n, k, nq, frac_removed, frac_subset, seed):
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10**9, n, replace=False)).astype(np.int64)
    x, q = unit(rng, n), unit(rng, nq)
    m = MatrixIndex(DIM, capacity=16)  # small capacity: growth is exercised
    for part in np.array_split(np.arange(n), 3):
        m.add(ids[part], x[part])
    removed = ids[rng.random(n) < frac_removed]
    assert m.remove(removed) == len(removed)
    live = ~np.isin(ids, removed)
    assert m.ntotal == live.sum()
    subset = None
    if frac_subset is not None:
        subset = ids[rng.random(n) < frac_subset]
    cand = ids[live] if subset is None else np.intersect1d(subset, ids[live])
    kk = min(k, len(cand))
    got = m.search(q, k, subset)
    if kk == 0:
        assert got[1].shape[1] == 0 or (got[1] == -1).all()
        return
    want = flat_reference(ids[live], x[live], q, kk, None if subset is None else cand)
    assert_same_topk((got[0][:, :kk], got[1][:, :kk]), want)


def test_ranges_and_both_strategies_agree():
    rng = np.random.default_rng(1)
    vids = np.arange(1, 201, dtype=np.int64)
    counts = rng.integers(1, 30, len(vids))
    fids = np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)])
    x, q = unit(rng, len(fids)), unit(rng, 3)
    m = MatrixIndex(DIM)
    m.add(fids, x)
    pick = vids[::7]
    lo = pick << 20
    want = flat_reference(fids, x, q, 10, fids[np.isin(fids >> 20, pick)])
    for cost in ({"scan": 1.0, "gather": 1e9}, {"scan": 1e9, "gather": 1.0}):
        m.cost.per_row = dict(cost)
        assert_same_topk(m.search(q, 10, ranges=(lo, lo + (1 << 20))), want)


def test_ranges_to_rows():
    assert ranges_to_rows(np.array([5, 0, 9]), np.array([7, 0, 10])).tolist() == [5, 6, 9]
    assert ranges_to_rows(np.array([], np.int64), np.array([], np.int64)).tolist() == []


def test_compaction_keeps_results_and_frees_rows():
    rng = np.random.default_rng(2)
    ids = np.arange(1000, dtype=np.int64)
    x, q = unit(rng, 1000), unit(rng, 2)
    m = MatrixIndex(DIM)
    m.add(ids, x)
    m.remove(ids[:150])  # 15 %: tombstoned only
    assert m._n == 1000 and m.ntotal == 850
    m.remove(ids[150:300])  # past 20 %: compacted
    assert m._n == 700 and m._dead == 0
    assert_same_topk(m.search(q, 5), flat_reference(ids[300:], x[300:], q, 5))
    m.add(np.array([5000]), x[:1])
    assert m.search(x[:1], 1)[1][0, 0] == 5000


def test_unsorted_ids_still_found():
    rng = np.random.default_rng(3)
    ids = rng.permutation(500).astype(np.int64)
    x = unit(rng, 500)
    m = MatrixIndex(DIM)
    m.add(ids, x)
    assert not m.rows.sorted
    sub = ids[:40]
    assert_same_topk(m.search(x[:2], 5, sub), flat_reference(ids, x, x[:2], 5, sub))
    assert m.remove(ids[:10]) == 10
    assert set(m.ids().tolist()) == set(ids[10:].tolist())


def test_memory_cap_raises_matrixfull():
    m = MatrixIndex(DIM, max_bytes=100 * (DIM * 4 + 1), capacity=16)
    m.add(np.arange(90), unit(np.random.default_rng(0), 90))
    with pytest.raises(MatrixFull):
        m.add(np.arange(90, 120), unit(np.random.default_rng(0), 30))
    assert m.ntotal == 90


def test_half_precision_rescored_exactly():
    rng = np.random.default_rng(4)
    ids = np.arange(2000, dtype=np.int64)
    x, q = unit(rng, 2000), unit(rng, 3)
    m = MatrixIndex(DIM, dtype=torch.bfloat16)  # fp16 is the CUDA default; bf16 runs on any CPU
    m.add(ids, x)
    got = m.search(q, 10)
    stored = torch.from_numpy(x).to(torch.bfloat16).float().numpy()  # what the matrix holds
    want = flat_reference(ids, stored, q, 10)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)


def _videos(rng, n_videos, max_frames=12):
    counts = rng.integers(0, max_frames, n_videos)
    vids = np.arange(1, n_videos + 1, dtype=np.int64)
    fids = np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)])
    x = unit(rng, len(fids))
    offsets = np.zeros(n_videos + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return vids, fids, x, offsets


@settings(max_examples=15, deadline=None)
@given(n_videos=st.integers(1, 40), c=st.integers(1, 60), dup=st.booleans(), seed=st.integers(0, 10_000))
def test_task_scores_equal_scoring_math(n_videos, c, dup, seed):
    rng = np.random.default_rng(seed)
    vids, fids, x, offsets = _videos(rng, n_videos)
    m = MatrixIndex(DIM)
    m.add(fids, x)
    lo = vids << 20
    rows, got_offsets = m.video_rows(lo, lo + (1 << 20))
    np.testing.assert_array_equal(got_offsets, offsets)
    cand = unit(rng, c)
    if dup and c > 2:
        cand[1] = cand[0]  # identical candidates must tie exactly
    values = rng.integers(0, 100, c).astype(np.float64)
    np.testing.assert_allclose(
        binary_scores(m.frames, rows, offsets, cand),
        score_binary(x, offsets, cand),
        rtol=1e-6,
        atol=1e-6,
        equal_nan=True,
    )
    np.testing.assert_array_equal(
        regression_scores(m.frames, rows, offsets, cand, values, chunk_rows=64),
        score_regression(x, offsets, cand, values, chunk_rows=64),
    )


def test_task_scores_skip_deleted_frames():
    rng = np.random.default_rng(5)
    vids, fids, x, offsets = _videos(rng, 30)
    m = MatrixIndex(DIM)
    m.add(fids, x)
    gone = vids[::3]
    m.remove(fids[np.isin(fids >> 20, gone)])
    keep = vids[~np.isin(vids, gone)]
    rows, got_offsets = m.video_rows(keep << 20, (keep << 20) + (1 << 20))
    mask = np.isin(fids >> 20, keep)
    want_offsets = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(np.diff(offsets)[np.isin(vids, keep)], out=want_offsets[1:])
    np.testing.assert_array_equal(got_offsets, want_offsets)
    cand = unit(rng, 10)
    np.testing.assert_allclose(
        binary_scores(m.frames, rows, got_offsets, cand),
        score_binary(x[mask], want_offsets, cand),
        rtol=1e-6,
        atol=1e-6,
        equal_nan=True,
    )
