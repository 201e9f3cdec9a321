"""The resident matrix backend on CUDA (`-m gpu`): search equals FAISS Flat, scores equal scoring_math.py.

Kept apart from test_matrix_index.py so it imports only what the GPU image has (no hypothesis).
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from echosearch.server.storage.frame_ids import frame_ids_for
from echosearch.server.storage.matrix_index import MatrixIndex
from echosearch.server.tasks.resident_scoring import binary_scores, regression_scores
from echosearch.server.tasks.scoring_math import score_binary, score_regression

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def flat_reference(ids, x, q, k, subset=None):
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1]))
    index.add_with_ids(x, ids)
    params = None if subset is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(subset))
    return index.search(q, k, params=params)


def assert_same_topk(got, want) -> None:
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    differ = got[1] != want[1]
    assert np.allclose(got[0][differ], want[0][differ], atol=1e-5), "ids differ without a tie"


def _videos(rng, n_videos, max_frames=12):
    counts = rng.integers(0, max_frames, n_videos)
    vids = np.arange(1, n_videos + 1, dtype=np.int64)
    fids = np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(vids, counts)])
    offsets = np.zeros(n_videos + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return vids, fids, unit(rng, len(fids)), offsets


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_cuda_search_matches_faiss_flat(dtype):
    rng = np.random.default_rng(11)
    n, dim = 200_000, 512
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.choice(n, 20)] + 0.05 * rng.standard_normal((20, dim)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64) * 3
    m = MatrixIndex(dim, device="cuda", dtype=dtype)
    m.add(ids, x)
    m.remove(ids[:1000])
    stored = torch.from_numpy(x).to(dtype).float().numpy()  # what the matrix holds
    live = np.arange(1000, n)
    got = m.search(q, 10)
    assert_same_topk(got, flat_reference(ids[live], stored[live], q, 10))
    sub = ids[::7]
    want = flat_reference(ids[live], stored[live], q, 10, np.intersect1d(sub, ids[live]))
    assert_same_topk(m.search(q, 10, sub), want)
    print(f"CUDA {dtype}: top-10 equal to FAISS Flat over the stored values (200k x 512, with deletes and a subset)")


@pytest.mark.gpu
@cuda
def test_cuda_task_scores_match_scoring_math():
    rng = np.random.default_rng(12)
    vids, fids, x, offsets = _videos(rng, 3000, max_frames=30)
    m = MatrixIndex(DIM, device="cuda", dtype=torch.float32)
    m.add(fids, x)
    lo = vids << 20
    rows, got_offsets = m.video_rows(lo, lo + (1 << 20))
    cand = unit(rng, 202)
    values = np.arange(202, dtype=np.float64) / 2
    np.testing.assert_allclose(
        binary_scores(m.frames, rows, got_offsets, cand[:3]), score_binary(x, offsets, cand[:3]), atol=1e-6, rtol=1e-5
    )
    got = regression_scores(m.frames, rows, got_offsets, cand, values)
    want = score_regression(x, offsets, cand, values)
    both = ~np.isnan(want)
    agree = np.mean(got[both] == want[both])
    assert np.isnan(got[~both]).all() and agree >= 0.99, agree  # GEMM rounding may flip a near-tie
    print(f"CUDA regression scores equal scoring_math's for {100 * agree:.2f} % of 3000 videos")


@pytest.mark.gpu
@cuda
def test_store_serves_from_cuda_and_falls_back_past_the_cap(tmp_path):
    pytest.importorskip("duckdb")
    from echosearch.server.storage.store import Store
    from tests.fixtures.storehelp import add

    rng = np.random.default_rng(13)
    store = Store(tmp_path / "a", search_device="cuda", save_every=0)
    for i in range(20):
        add(store, i, rng)
    info = store.search_backend_info()
    if info["backend"] == "faiss-gpu":
        pytest.skip("this FAISS build sees GPUs: the FAISS GPU mirror answers instead")
    assert info["backend"] == "torch-cuda" and info["device"].startswith("cuda") and info["memory_bytes"] > 0
    assert store.on_gpu and len(store.search_frames(unit(rng, 1, 16), 5)[0]) == 5
    store.close()
    capped = Store(tmp_path / "b", search_device="cuda", save_every=0, gpu_memory_gb=1e-6)
    add(capped, 0, rng)
    assert capped.search_backend_info()["backend"] == "faiss-cpu"
    capped.close()
    print(f"Store on {info['device']}: {info['backend']}, {info['memory_bytes']} B resident; a 1 kB cap fell back")
