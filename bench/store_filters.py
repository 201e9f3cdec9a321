"""Filtered-search and delete rows for bench/store.py (issue 9, item 6), on the store's CPU index.

Filtered rows time `Store.search_frames(q, 10, flt)` (the service's path: catalog filter, then the
index) against the FAISS floor: the same IndexFlatIP with an IDSelectorBatch over exactly the
candidate rows, candidates known in advance. Every ratio is measured in this one process.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import faiss
import numpy as np

from echosearch.server.records import VideoFilter
from echosearch.server.storage.flat_search import topk_desc
from echosearch.server.storage.frame_ids import FRAME_BITS
from echosearch.server.storage.index import VectorIndex
from echosearch.server.storage.store import Store


def p50_ms(fn, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def decile_filter(store: Store, decile: str) -> tuple[VideoFilter, np.ndarray]:
    flt = VideoFilter(tags={"decile": decile})
    vids, counts = store.catalog.select_videos(flt)
    return flt, store.frame_index._rows.rows_in_ranges(vids << FRAME_BITS, (vids << FRAME_BITS) + counts)


def filtered_rows(store: Store, queries: np.ndarray, emit, label: str = "Flat") -> None:
    """Flat filtered p50 vs the FAISS floor and vs unfiltered, for 10 %, 1 % and 50 % filters."""
    idx = store.frame_index
    flat = faiss.downcast_index(idx._index.index)
    unf = p50_ms(lambda q: store.search_frames(q, 10), queries)
    for name, flt_of in (
        ("10 % of videos", lambda: decile_filter(store, "3")),
        ("1 % of videos", lambda: _percent_filter(store, 1)),
        ("50 % of videos", lambda: (VideoFilter(views=("A4C",)), None)),
    ):
        flt, rows = flt_of()
        if rows is None:
            vids, counts = store.catalog.select_videos(flt)
            rows = idx._rows.rows_in_ranges(vids << FRAME_BITS, (vids << FRAME_BITS) + counts)
        sel = faiss.IDSelectorBatch(rows)
        floor = p50_ms(lambda q: flat.search(q[None], 10, params=faiss.SearchParameters(sel=sel)), queries)  # noqa: B023
        got = p50_ms(lambda q: store.search_frames(q, 10, flt), queries)  # noqa: B023
        # exactness against a brute-force scan of the candidate rows
        xb = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
        q0 = queries[:5]
        want = idx._rows.ids[rows][topk_desc(q0 @ xb[rows].T, 10)]
        have = np.array([[h.frame_id for h in hits] for hits in store.search_frames(q0, 10, flt)])
        exact = "exact" if np.array_equal(np.sort(want, 1), np.sort(have, 1)) else "NOT exact"
        emit(
            f"{label} filtered ({name}, {len(rows):,} frames) top-10 p50, Store.search_frames",
            f"{got / floor:.2f}× the FAISS floor (IndexFlatIP + IDSelectorBatch), {got / unf:.2f}× unfiltered; "
            f"{exact}; strategy costs/row {_costs(idx)}",
        )


def _percent_filter(store: Store, pct: int) -> tuple[VideoFilter, None]:
    ids = store.catalog.select_video_ids(None)
    pick = ids[:: max(1, 100 // pct)]
    return VideoFilter(video_ids=tuple(int(v) for v in pick)), None


def _costs(idx: VectorIndex) -> str:
    c = idx.flat_cost.per_row
    return f"bitmap {c['bitmap'] * 1e9:.1f} ns, gather {c['gather'] * 1e9:.1f} ns"


def ann_filtered_rows(store: Store, ann: VectorIndex, queries: np.ndarray, emit) -> None:
    """An ANN index, filtered to 10 % / 1 % of videos: p50 vs its own unfiltered p50, recall vs exact."""
    factory = ann.factory
    unf = p50_ms(lambda q: ann.search(q[None], 10), queries)
    flat = faiss.downcast_index(store.frame_index._index.index)
    xb = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
    for name, (flt, _) in (("10 % of videos", decile_filter(store, "3")), ("1 % of videos", _percent_filter(store, 1))):
        vids, counts = store.catalog.select_videos(flt)
        lo = vids << FRAME_BITS
        got = p50_ms(lambda q: ann.search(q[None], 10, ranges=(lo, lo + counts)), queries)  # noqa: B023
        rows = store.frame_index._rows.rows_in_ranges(lo, lo + counts)
        want = store.frame_index._rows.ids[rows][topk_desc(queries @ xb[rows].T, 10)]
        have = ann.search(queries, 10, ranges=(lo, lo + counts))[1]
        rec = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(have, want)]))
        c = ann.ann_cost.per_row
        emit(
            f"{factory} filtered ({name}, {int(counts.sum()):,} frames) top-10 p50",
            f"{got / unf:.2f}× {factory} unfiltered; recall@10 {rec:.3f} "
            f"(costs/row: exact scan {c['exact'] * 1e9:.1f} ns, index {c['index'] * 1e9:.2f} ns)",
        )


def delete_rows(store: Store, queries: np.ndarray, emit, fraction: float = 0.01, one_by_one: int = 100) -> None:
    """Delete `fraction` of the videos while a thread keeps searching: first `one_by_one` of them through
    Store.delete_video (the DeleteVideo RPC's path), the rest in one Store.delete_videos call."""
    ids = store.catalog.select_video_ids(None)
    doomed = ids[np.random.default_rng(5).permutation(len(ids))[: max(2, int(len(ids) * fraction))]]
    single, batch = doomed[: min(one_by_one, len(doomed) // 2)], doomed[min(one_by_one, len(doomed) // 2) :]
    frames = int(store.catalog.select_videos(VideoFilter(video_ids=tuple(int(v) for v in doomed)))[1].sum())
    before = p50_ms(lambda q: store.search_frames(q, 10), queries[:20])
    waits: list[float] = []
    stop = threading.Event()

    def searcher() -> None:
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            store.search_frames(queries[i % len(queries)], 10)
            waits.append(time.perf_counter() - t)
            i += 1

    holds: list[float] = []  # how long each write held the index lock exclusively: a search's worst wait
    real_write = store._lock.write

    @contextmanager
    def timed_write():
        with real_write():
            t0 = time.perf_counter()
            try:
                yield
            finally:
                holds.append(time.perf_counter() - t0)

    store._lock.write = timed_write
    th = threading.Thread(target=searcher)
    th.start()
    try:
        t = time.perf_counter()
        for v in single:
            store.delete_video(int(v))
        one_s = (time.perf_counter() - t) / len(single)
        t = time.perf_counter()
        store.delete_videos(batch.tolist())
        batch_s = time.perf_counter() - t
    finally:
        stop.set()
        th.join()
        store._lock.write = real_write
    worst = 1000 * max(waits) if waits else float("nan")
    emit(
        f"delete {len(doomed):,} videos ({frames:,} frames, {100 * fraction:g} %) while searching",
        f"Store.delete_video one by one: {one_s / batch_s * len(batch):.2f}× the batch time per video "
        f"(projected {one_s * len(doomed):.1f} s for all); Store.delete_videos of {len(batch):,} in one call: "
        f"{batch_s:.1f} s (→ {batch_s * len(doomed) / len(batch):.1f} s for all {len(doomed):,}); "
        f"{len(waits)} concurrent searches, slowest {worst / before:.1f}× the idle p50; index lock held "
        f"exclusively at most {1000 * max(holds):.1f} ms per write (the longest a search can wait behind a delete)",
    )
