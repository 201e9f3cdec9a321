"""CUDA paths: the model on a GPU gives the CPU's embeddings; FAISS on GPUs gives the CPU's hits.

Skipped where there is no CUDA device (CI, the development machines); run on a
GPU machine with `pytest -m gpu` (tools/gpu_check.sh does that on a lent device).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from echosearch.server.media.video import prepare_video
from echosearch.server.model import load_model
from tests.fixtures.synthetic import make_video

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@functools.cache
def _model(spec: str, device: str, precision: str = "fp32"):
    return load_model(spec, device=device, precision=precision)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@needs_cuda
@pytest.mark.parametrize("spec", ["random:tiny", "random:echoclip"])
@pytest.mark.parametrize("precision,floor", [("fp32", 0.9999), ("bf16", 0.99), ("fp16", 0.995)])
def test_cuda_embeddings_match_cpu(spec: str, precision: str, floor: float) -> None:
    cpu_model = _model(spec, "cpu")
    video = prepare_video(
        make_video(width=320, height=240, frames=40, seed=3),
        mean=cpu_model.mean,
        std=cpu_model.std,
        image_size=cpu_model.image_size,
    )
    cpu = cpu_model.encode_frames(video.pixels)
    gpu_model = _model(spec, "cuda", precision)
    gpu = gpu_model.encode_frames(video.pixels)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    assert np.allclose(np.linalg.norm(gpu, axis=1), 1.0, atol=1e-3)
    worst = float(_cosines(cpu, gpu).min())
    print(f"{spec} {precision}: min per-frame cosine CUDA vs CPU = {worst:.6f}")
    assert worst >= floor
    texts = ["ECHO DENSITY IN RIGHT VENTRICLE SUGGESTIVE OF CATHETER, PACER LEAD, OR ICD LEAD. "]
    cpu_t = _model(spec, "cpu").encode_texts(texts)
    assert float(_cosines(cpu_t, gpu_model.encode_texts(texts)).min()) >= floor


def test_faiss_gpu_index_matches_cpu() -> None:
    faiss = pytest.importorskip("faiss")
    from echosearch.server.storage.faiss_gpu import gpu_count
    from echosearch.server.storage.index import VectorIndex

    if gpu_count() == 0:
        pytest.skip("this FAISS build sees no GPU (faiss-cpu, or no CUDA device)")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20_000, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(20_000, dtype=np.int64) * 7 + 3
    queries = vectors[:50] + 0.01 * rng.normal(size=(50, 512)).astype(np.float32)
    cpu, gpu = VectorIndex(512, "Flat", use_gpu=False), VectorIndex(512, "Flat", use_gpu=True)
    cpu.add(ids, vectors)
    gpu.add(ids, vectors)
    assert gpu.on_gpu and not cpu.on_gpu
    cs, ci = cpu.search(queries, 10)
    gs, gi = gpu.search(queries, 10)
    assert np.array_equal(ci, gi)
    assert np.allclose(cs, gs, atol=1e-4)
    print(f"faiss GPUs: {faiss.get_num_gpus()}; GPU Flat top-10 identical to CPU on 50 queries")


# ---- the batching encoder on CUDA (issue 9) --------------------------------------------------------


def _crops(rows: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 255, size=(rows, 3, 224, 224), dtype=np.uint8))


@needs_cuda
@pytest.mark.parametrize("precision,floor", [("fp32", 0.9999), ("bf16", 0.99), ("fp16", 0.995)])
def test_cuda_encoder_batches_across_requests_like_each_alone(precision: str, floor: float) -> None:
    import threading

    from echosearch.server.encoder import BatchingEncoder

    model = _model("random:echoclip", "cuda", precision)
    cpu = _model("random:echoclip", "cpu")
    videos = [_crops(n, seed) for seed, n in enumerate((20, 7, 64, 1, 33, 20, 5, 90))]
    alone = [model.encode_frames(v) for v in videos]
    results: list = [None] * len(videos)
    with BatchingEncoder(model, batch_frames=64, batch_wait_ms=20) as encoder:
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, encoder.encode_frames(videos[i])))
            for i in range(len(videos))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stats = encoder.stats()
        text = encoder.encode_texts(["SEVERE MITRAL REGURGITATION. "])
    worst = min(float(_cosines(a, b).min()) for a, b in zip(alone, results, strict=True))
    print(
        f"encoder {precision}: min cosine batched vs alone {worst:.6f}; mean frames/batch {stats.mean_frames_per_batch:.1f}"
    )
    assert worst >= 0.9999  # batching changes at most the last bits, at any precision
    assert stats.mean_frames_per_batch > 20 and stats.frames == sum(len(v) for v in videos)
    # And the precision's own floor against CPU fp32 (uint8 crops normalised on the GPU).
    vs_cpu = float(_cosines(cpu.encode_frames(videos[2]), results[2]).min())
    print(f"encoder {precision}: min cosine vs CPU fp32 {vs_cpu:.6f}")
    assert vs_cpu >= floor
    assert float(_cosines(cpu.encode_texts(["SEVERE MITRAL REGURGITATION. "]), text).min()) >= floor


@needs_cuda
def test_cuda_compiled_image_tower_matches_eager() -> None:
    from echosearch.server.model import load_model

    eager = _model("random:tiny", "cuda")
    compiled = load_model("random:tiny", device="cuda")
    compiled.compile_image_encoder()
    for rows in (3, 8, 20):  # padded to 4, 8, 32: a few shapes compile
        x = _crops(rows, rows)
        worst = float(_cosines(eager.encode_frames(x), compiled.encode_frames(x)).min())
        print(f"torch.compile tiny, {rows} rows: min cosine vs eager {worst:.6f}")
        assert worst >= 0.9999
