"""Congruence of the two SearchBackends (qdrant-client style): the FAISS index (exact Flat) and the torch matrix
(on CPU) are built by the same operations and asked the same questions, and must give the same answers.

Each case is one question; each stage is a state of the data (tombstones below the compaction threshold, after
a compaction, after adds past it); each strategy forces one of the two exact ways each backend answers a
restricted search (scan with a mask / gather the candidates), so every pairing is compared.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from echosearch.server.storage.frame_ids import FRAME_BITS, frame_ids_for
from echosearch.server.storage.index import VectorIndex
from echosearch.server.storage.matrix_index import MatrixIndex
from echosearch.server.storage.search_backend import SearchBackend

DIM = 24
N_VIDEOS = 120
Search = Callable[[SearchBackend], tuple[np.ndarray, np.ndarray]]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class _Data:
    """Videos of 1..12 frames under catalog frame ids, and the video ids each stage removes."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.vids = np.arange(1, N_VIDEOS + 1, dtype=np.int64)
        self.counts = rng.integers(1, 13, N_VIDEOS)
        self.fids = np.concatenate([frame_ids_for(int(v), int(c)) for v, c in zip(self.vids, self.counts)])
        self.vectors = _unit(rng, len(self.fids))
        self.queries = _unit(rng, 5)
        self.first_tombstones = self.vids[rng.random(N_VIDEOS) < 0.08]  # under 20 %: tombstoned only
        self.compacting = self.vids[(rng.random(N_VIDEOS) < 0.3) & ~np.isin(self.vids, self.first_tombstones)]

    def frames_of(self, vids: np.ndarray) -> np.ndarray:
        return self.fids[np.isin(self.fids >> FRAME_BITS, vids)]


DATA = _Data()


def _faiss_flat() -> VectorIndex:
    return VectorIndex(DIM, "Flat", use_gpu=False)


def _torch_cpu() -> MatrixIndex:
    return MatrixIndex(DIM, device="cpu", capacity=16)  # small capacity: growth is exercised


def _build(make: Callable[[], SearchBackend], stage: str) -> SearchBackend:
    """The same operations on either backend: three add batches, then the stage's removals and adds."""
    index = make()
    half = DATA.vids[: N_VIDEOS // 2]
    for part in np.array_split(half, 3):
        index.add(DATA.frames_of(part), DATA.vectors[np.isin(DATA.fids >> FRAME_BITS, part)])
    if stage == "tombstones":
        index.remove(DATA.frames_of(DATA.first_tombstones))
    elif stage in ("compacted", "grown"):
        index.remove(DATA.frames_of(DATA.first_tombstones))
        index.remove(DATA.frames_of(DATA.compacting))
    if stage == "grown":
        rest = DATA.vids[N_VIDEOS // 2 :]
        index.add(DATA.frames_of(rest), DATA.vectors[np.isin(DATA.fids >> FRAME_BITS, rest)])
    return index


def _ranges(vids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(vids, np.int64) << FRAME_BITS
    return lo, lo + (1 << FRAME_BITS)


CASES: dict[str, Search] = {
    "unfiltered top 10": lambda b: b.search(DATA.queries, 10),
    "unfiltered, k past every vector": lambda b: b.search(DATA.queries, 10_000),
    "one query as a vector": lambda b: b.search(DATA.queries[0], 7),
    "subset of frame ids": lambda b: b.search(DATA.queries, 8, DATA.fids[::5]),
    "subset with tombstoned and absent ids": lambda b: b.search(
        DATA.queries, 8, np.concatenate([DATA.frames_of(DATA.first_tombstones), DATA.fids[::9], [10**15]])
    ),
    "ranges: a cohort of videos": lambda b: b.search(DATA.queries, 10, ranges=_ranges(DATA.vids[::4])),
    "ranges: one video, fewer frames than k": lambda b: b.search(DATA.queries, 50, ranges=_ranges(DATA.vids[3:4])),
    "ranges: only tombstoned videos": lambda b: b.search(DATA.queries, 5, ranges=_ranges(DATA.first_tombstones)),
    "ranges: no video": lambda b: b.search(DATA.queries, 5, ranges=_ranges(np.empty(0, np.int64))),
    "k = 0": lambda b: b.search(DATA.queries, 0),
}

# per-row costs that make each backend pick its masked scan, or its gather of the candidate rows
STRATEGIES = {
    "scan": ({"bitmap": 1.0, "gather": 1e9}, {"scan": 1.0, "gather": 1e9}),
    "gather": ({"bitmap": 1e9, "gather": 1.0}, {"scan": 1e9, "gather": 1.0}),
}


def _pair(stage: str, strategy: str) -> tuple[VectorIndex, MatrixIndex]:
    flat, matrix = _build(_faiss_flat, stage), _build(_torch_cpu, stage)
    flat.flat_cost.per_row, matrix.cost.per_row = (dict(c) for c in STRATEGIES[strategy])
    flat.flat_cost.EXPLORE_EVERY = matrix.cost.EXPLORE_EVERY = 10**9  # no exploring: the forced strategy answers
    return flat, matrix


def assert_same_answers(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    """Same shape, same scores, same ids (where two scores tie, either order)."""
    (gs, gi), (ws, wi) = got, want
    assert gs.shape == ws.shape and gi.shape == wi.shape, (gs.shape, ws.shape)
    assert gi.dtype == wi.dtype == np.int64 and gs.dtype == ws.dtype == np.float32
    assert ((gi == -1) == (wi == -1)).all()
    live = wi >= 0
    np.testing.assert_allclose(gs[live], ws[live], rtol=1e-5, atol=1e-6)
    for row, col in zip(*np.nonzero(gi != wi)):
        assert np.sum(np.isclose(ws[row], ws[row, col], atol=1e-6)) > 1, f"ids differ without a tie at {row},{col}"


def test_both_implement_the_protocol() -> None:
    assert isinstance(_faiss_flat(), SearchBackend) and isinstance(_torch_cpu(), SearchBackend)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("stage", ["fresh", "tombstones", "compacted", "grown"])
@pytest.mark.parametrize("case", list(CASES))
def test_faiss_flat_and_torch_matrix_answer_alike(case: str, stage: str, strategy: str) -> None:
    flat, matrix = _pair(stage, strategy)
    assert flat.ntotal == matrix.ntotal and sorted(flat.ids().tolist()) == sorted(matrix.ids().tolist())
    assert_same_answers(CASES[case](matrix), CASES[case](flat))


@pytest.mark.parametrize("stage", ["tombstones", "compacted", "grown"])
def test_answers_match_brute_force_over_the_live_vectors(stage: str) -> None:
    """Agreeing is not enough: both must be right. The reference is numpy over what should be live."""
    first_half = DATA.vids[: N_VIDEOS // 2]
    removed = (
        DATA.first_tombstones if stage == "tombstones" else np.concatenate([DATA.first_tombstones, DATA.compacting])
    )
    removed = np.intersect1d(removed, first_half)  # removed before the second half was added
    held = DATA.vids if stage == "grown" else first_half
    live = np.isin(DATA.fids >> FRAME_BITS, held) & ~np.isin(DATA.fids >> FRAME_BITS, removed)
    scores = DATA.queries @ DATA.vectors[live].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    want = (np.take_along_axis(scores, order, 1).astype(np.float32), DATA.fids[live][order])
    for backend in _pair(stage, "scan"):
        assert_same_answers(backend.search(DATA.queries, 10), want)
