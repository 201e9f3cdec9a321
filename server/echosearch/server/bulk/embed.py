"""`echosearch bulk embed`: video files or URIs -> Parquet shards of frame embeddings, on Ray Data.

The pipeline: a CPU actor pool reads each file (any pyarrow filesystem), hashes it, and decodes and
preprocesses it with the server's own `prepare_media` (videos and DICOM); an encoder actor pool (one model per actor,
one GPU each where the cluster has GPUs) embeds frames batched across videos; the driver writes shards
(whole videos, about `shard_frames` rows each) atomically and `failures.parquet`. Reruns skip every
file whose sha256 is already in a shard of the output folder (or in `skip_sha256`); `sources.parquet` keeps
the sha256 of every file hashed before, by (URI, size, mtime), so an unchanged file is skipped before Ray or
the model starts, without being read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from echosearch.server.bulk.shards import (
    EmbeddedVideo,
    shard_models,
    shard_table,
    stored_sha256,
    write_failures,
    write_shard,
)
from echosearch.server.bulk.sources import (
    SourceFile,
    list_source_files,
    read_source,
    read_source_hashes,
    write_source_hashes,
)
from echosearch.server.errors import InvalidRequestError
from echosearch.server.records import Sampling, VideoMetadata

log = logging.getLogger(__name__)

DECODED = pa.schema(
    [
        ("uri", pa.string()),
        ("sha256", pa.string()),
        ("size_bytes", pa.int64()),
        ("status", pa.string()),  # "ok" | "skipped" | "failed"
        ("error", pa.string()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("total_frames", pa.int64()),
        ("frame_index", pa.list_(pa.int64())),
        ("timestamp", pa.list_(pa.float64())),
        ("pixels", pa.large_binary()),  # float32 (n,3,S,S) CLIP-normalised; after encoding: float32 (n,dim)
        ("thumbnail", pa.list_(pa.binary())),  # one JPEG of each frame's model-input crop; null with thumbnails off
    ]
)


@dataclass
class EmbedOptions:
    """What `bulk embed` runs: sources, output folder, model, sampling and the Ray cluster to use."""

    sources: Sequence[str]
    out_dir: Path
    model_spec: str
    metadata: Mapping[str, VideoMetadata] = field(default_factory=dict)  # by source URI / absolute path
    sampling: Sampling = Sampling()
    channel_order: str = "rgb"
    precision: str = "fp32"
    ray_address: str | None = None  # None: start a local Ray on this machine's cores
    num_gpus: int | None = None  # None: every GPU the cluster has (0 on a CPU-only cluster)
    decode_concurrency: int | None = None
    encode_concurrency: int | None = None
    encode_batch_videos: int = 8
    shard_frames: int = 250_000  # > 2 DuckDB row groups: the import writes them straight to the file, not via the WAL
    skip_sha256: frozenset[str] = frozenset()  # e.g. what a server already stores (--skip-stored)
    thumbnails: bool = True  # a JPEG of each frame's model-input crop in the shard, as `serve --thumbnails on` keeps


@dataclass(frozen=True)
class EmbedSummary:
    """What a run did; `hashes`: the sha256 of each source it knows (read now or recorded before), by URI."""

    files: int
    embedded: int
    skipped: int
    failed: int
    frames: int
    shards: tuple[Path, ...]
    seconds: float
    hashes: Mapping[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.files} files: {self.embedded} embedded, {self.skipped} skipped (already embedded), "
            f"{self.failed} failed; {self.frames} frames in {len(self.shards)} new shards, "
            f"{self.seconds:.1f}s ({rate:.1f} frames/s)"
        )


# ---- the Ray stages ------------------------------------------------------------------------------


class DecodeStage:
    """CPU actor: read, hash, skip known content, decode + preprocess with the server's media entry point."""

    def __init__(
        self,
        skip: frozenset[str],
        sampling: Sampling,
        channel_order: str,
        preprocess: dict[str, Any],
        thumbnails: bool = True,
    ) -> None:
        self.skip = skip
        self.sampling, self.channel_order, self.preprocess = sampling, channel_order, preprocess
        self.thumbnails = thumbnails

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self._one(uri) for uri in batch.column("uri").to_pylist()], schema=DECODED)

    def _one(self, uri: str) -> dict[str, Any]:
        from echosearch.server.media.prepare import prepare_media

        row: dict[str, Any] = {"uri": uri, "status": "failed"}
        try:
            data = read_source(uri)
        except Exception as exc:  # unreadable: a permission, a vanished object, a network error
            return {**row, "error": f"cannot read: {exc}"}
        row["sha256"], row["size_bytes"] = hashlib.sha256(data).hexdigest(), len(data)
        if row["sha256"] in self.skip:
            return {**row, "status": "skipped"}
        try:
            # The online ingest's own call: the same crops, so the same thumbnail JPEGs.
            prepared = prepare_media(
                data, self.sampling, channel_order=self.channel_order, thumbnails=self.thumbnails, **self.preprocess
            )
        except Exception as exc:  # a bad file is a failure to record, never a reason to stop the run
            return {**row, "error": str(exc) or type(exc).__name__}
        return {
            **row,
            "status": "ok",
            "fps": float(prepared.fps),
            "width": int(prepared.width),
            "height": int(prepared.height),
            "total_frames": int(prepared.total_frames),
            "frame_index": prepared.frame_indices.tolist(),
            "timestamp": prepared.timestamps.tolist(),
            "pixels": prepared.pixels.numpy().tobytes(),
            "thumbnail": list(prepared.thumbnails) if prepared.thumbnails is not None else None,
        }


class EncodeStage:
    """Encoder actor: one model; embeds the frames of a whole batch of videos at once."""

    def __init__(self, model_spec: str, device: str, precision: str, threads: int) -> None:
        import torch

        from echosearch.server.model import load_model

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.model = load_model(model_spec, device=device, precision=precision)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        status = batch.column("status").to_pylist()
        ok = [i for i, s in enumerate(status) if s == "ok"]
        if not ok:
            return batch
        size = self.model.image_size
        pixels = batch.column("pixels").to_pylist()
        arrays = [np.frombuffer(pixels[i], dtype=np.float32).reshape(-1, 3, size, size) for i in ok]
        embeddings = self.model.encode_frames(torch.from_numpy(np.concatenate(arrays)))
        bounds = np.cumsum([0] + [len(a) for a in arrays])
        out: list[bytes | None] = [None] * batch.num_rows
        for j, i in enumerate(ok):
            out[i] = embeddings[bounds[j] : bounds[j + 1]].tobytes()
        return batch.set_column(batch.schema.get_field_index("pixels"), "pixels", pa.array(out, pa.large_binary()))


# ---- the driver ----------------------------------------------------------------------------------


def _start_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)


def _check_model(out_dir: Path, model_spec: str, identity: str | None = None) -> None:
    """InvalidRequestError when the folder's shards were made by another model (by spec; by identity once loaded)."""
    for made_by in shard_models(out_dir):
        other = made_by.rsplit("@sha256:", 1)[0] != model_spec if identity is None else made_by != identity
        if other:
            raise InvalidRequestError(
                f"{out_dir} holds shards made by model {made_by!r}, not {identity or model_spec!r}: "
                "embed into another --out folder, or give the model the shards were made with"
            )


def run_embed(opts: EmbedOptions, files: Sequence[SourceFile] | None = None) -> EmbedSummary:
    """Embed every source into shards under opts.out_dir; bad files go to failures.parquet and the run goes on.

    `files`: the sources already listed (list_source_files), else opts.sources are listed here. What is
    known to be embedded (or skipped) is left out first, so a rerun with nothing new starts neither Ray nor
    the model.
    """
    started = time.perf_counter()
    opts.sampling.validate()
    if opts.channel_order not in ("rgb", "bgr"):
        raise InvalidRequestError(f"channel order must be 'rgb' or 'bgr', not {opts.channel_order!r}")
    files = list(files) if files is not None else list_source_files(opts.sources)
    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_model(out_dir, opts.model_spec)
    known = stored_sha256(out_dir) | set(opts.skip_sha256)
    recorded = read_source_hashes(out_dir)
    hashes = {f.uri: recorded[f.stat_key] for f in files if f.stat_key in recorded}
    todo = [f for f in files if hashes.get(f.uri) not in known]
    if not todo:
        write_failures(out_dir, [])  # this run's failures: none
        seconds = time.perf_counter() - started
        return EmbedSummary(len(files), 0, len(files), 0, 0, (), seconds, hashes)
    return _embed(opts, out_dir, files, todo, known, hashes, recorded, started)


def _embed(
    opts: EmbedOptions,
    out_dir: Path,
    files: list[SourceFile],
    todo: list[SourceFile],
    known: set[str],
    hashes: dict[str, str],
    recorded: dict[tuple[str, int, int], str],
    started: float,
) -> EmbedSummary:
    """Load the model, start Ray and run the pipeline over `todo`; record every hash the run learnt."""
    import ray
    import ray.data

    from echosearch.server.model import load_model

    # The driver loads the model once too: its identity and preprocessing go into every shard.
    probe = load_model(opts.model_spec, device="cpu", precision="fp32")
    identity, dim = probe.identity, probe.embed_dim
    preprocess = {"mean": probe.mean, "std": probe.std, "image_size": probe.image_size}
    del probe
    _check_model(out_dir, opts.model_spec, identity)

    _start_ray(opts.ray_address)
    resources = ray.cluster_resources()
    cpus = max(1, int(resources.get("CPU", os.cpu_count() or 1)))
    gpus = int(resources.get("GPU", 0)) if opts.num_gpus is None else int(opts.num_gpus)
    encoders = opts.encode_concurrency or (gpus if gpus > 0 else 1)
    decoders = opts.decode_concurrency or max(1, cpus - (0 if gpus else encoders))
    device = "cuda" if gpus > 0 else "cpu"
    log.info(
        "bulk embed: %d files (%d known to be embedded or stored), %d decode actors, %d %s encode actors, model %s",
        len(todo), len(files) - len(todo), decoders, encoders, device.upper(), identity,
    )  # fmt: skip
    # Ray Data restarts a dead actor and retries its batch (max_restarts = max_task_retries = -1 by default):
    # a killed worker loses nothing.
    ds = ray.data.from_items([{"uri": f.uri} for f in todo], override_num_blocks=min(len(todo), 4 * decoders))
    ds = ds.map_batches(
        DecodeStage,
        fn_constructor_args=(frozenset(known), opts.sampling, opts.channel_order, preprocess, opts.thumbnails),
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=decoders),
        num_cpus=1,
    )
    encode_resources = {"num_gpus": 1} if gpus > 0 else {"num_cpus": 1}
    ds = ds.map_batches(
        EncodeStage,
        fn_constructor_args=(opts.model_spec, device, opts.precision, max(1, cpus // encoders)),
        batch_size=opts.encode_batch_videos,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=encoders),
        **encode_resources,
    )
    done = _write(ds, out_dir, opts, identity, dim, known, len(files), started)
    hashes.update(done.hashes)
    # The hashes learnt this run join the record; a changed file's new entry replaces its old one.
    learnt = {f.uri: f.stat_key for f in files if f.stat_key is not None and f.uri in hashes}
    kept = {key: sha for key, sha in recorded.items() if key[0] not in learnt}
    write_source_hashes(out_dir, kept | {key: hashes[uri] for uri, key in learnt.items()})
    skipped = done.skipped + len(files) - len(todo)
    return dataclasses.replace(done, skipped=skipped, seconds=time.perf_counter() - started, hashes=hashes)


def _write(
    ds: Any, out_dir: Path, opts: EmbedOptions, identity: str, dim: int, known: set[str], files: int, started: float
) -> EmbedSummary:
    """Drain the dataset into shards of whole videos; collect failures; count what happened."""
    pending: list[EmbeddedVideo] = []
    pending_frames = embedded = skipped = frames = 0
    failures: list[tuple[str, str | None, str]] = []
    shards: list[Path] = []
    seen = set(known)
    hashes: dict[str, str] = {}

    def flush() -> None:
        nonlocal pending, pending_frames
        if pending:
            shards.append(write_shard(out_dir, shard_table(pending, identity, dim)))
            log.info("wrote %s: %d videos, %d frames", shards[-1].name, len(pending), pending_frames)
        pending, pending_frames = [], 0

    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            if row["sha256"]:
                hashes[row["uri"]] = row["sha256"]
            if row["status"] == "failed":
                failures.append((row["uri"], row["sha256"], row["error"]))
                log.warning("failed: %s: %s", row["uri"], row["error"])
                continue
            if row["status"] == "skipped" or row["sha256"] in seen:
                skipped += 1
                continue
            seen.add(row["sha256"])
            emb = np.frombuffer(row["pixels"], dtype=np.float32).reshape(-1, dim)
            pending.append(
                EmbeddedVideo(
                    sha256=row["sha256"],
                    source_uri=row["uri"],
                    size_bytes=row["size_bytes"],
                    total_frames=row["total_frames"],
                    fps=row["fps"],
                    width=row["width"],
                    height=row["height"],
                    frame_indices=np.asarray(row["frame_index"], np.int64),
                    timestamps=np.asarray(row["timestamp"], np.float64),
                    embeddings=emb,
                    thumbnails=tuple(row["thumbnail"]) if row["thumbnail"] is not None else None,
                    metadata=opts.metadata.get(row["uri"], VideoMetadata()),
                )
            )
            embedded += 1
            frames += len(emb)
            pending_frames += len(emb)
            if pending_frames >= opts.shard_frames:
                flush()
    flush()
    write_failures(out_dir, failures)
    seconds = time.perf_counter() - started
    return EmbedSummary(files, embedded, skipped, len(failures), frames, tuple(shards), seconds, hashes)
