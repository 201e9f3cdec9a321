"""The ingest use case: upload checks, decode -> encode -> one catalog transaction, and re-ingest of stored content.

One ingest path serves gRPC uploads, the DICOM receiver (through gRPC) and in-process callers:
decode and crop run in a decode worker process, the frames are encoded by the batching encoder,
and the store commits video, frames and embeddings in one transaction before the answer goes out.
A video is identified by the SHA-256 of its bytes, so an ingest is idempotent; stored content
uploaded again with metadata gets that metadata written (`reingest`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from echosearch.server import cancellation
from echosearch.server.errors import InvalidRequestError, RequestCancelledError, TooLargeError
from echosearch.server.media.dicom.header import merge_metadata
from echosearch.server.media.prepare import PrepareOptions
from echosearch.server.media.preprocess import PreparedVideo
from echosearch.server.records import (
    CHANNEL_ORDERS,
    METADATA_FIELDS,
    TAG_PREFIX,
    IngestOutcome,
    MetadataChange,
    MetadataConflict,
    NewVideo,
    Sampling,
    VideoMetadata,
    VideoRecord,
)
from echosearch.server.services.container import Services
from echosearch.server.services.videos import apply_metadata_change
from echosearch.server.storage.frame_ids import MAX_FRAMES_PER_VIDEO

log = logging.getLogger(__name__)


# ---- checks before any byte of the body is received -----------------------------------------


def check_upload_size(services: Services, name: str, size: int, *, partial: bool = False) -> None:
    """The upload-size rule (TooLargeError); `partial` when `size` bytes arrived and more are coming."""
    limit = services.limits.max_upload_bytes
    if size > limit:
        what = f"more than {size} bytes" if partial else f"{size} bytes"
        raise TooLargeError(
            f"{name}: {what} is over the server's upload limit of {limit} bytes ({limit / 2**20:.0f} MiB); "
            "split or shorten the video, or start the server with a larger --max-upload-mb"
        )


def check_header(
    services: Services, name: str, size: int, metadata: VideoMetadata, sampling: Sampling, channel_order: str = "rgb"
) -> Sampling:
    """Everything an upload's header says, checked before its body is received; the sampling within the caps."""
    if channel_order not in CHANNEL_ORDERS:
        raise InvalidRequestError(f"channel order must be 'rgb' or 'bgr', not {channel_order!r}")
    check_upload_size(services, name, size)
    services.limits.check_metadata(name, metadata)
    return services.limits.sampling_within(sampling)


# ---- ingest -------------------------------------------------------------------------------


def ingest_stored(
    services: Services, sha256: str, metadata: VideoMetadata, *, update_metadata: bool = False
) -> IngestOutcome | None:
    """The answer for content already stored (its metadata merged by `reingest`'s rule), else None.

    Re-running a folder of a million archived files then costs a hash per file, not an upload and a decode.
    """
    existing = services.reader.find_by_sha256(sha256.strip().lower())
    if existing is None:
        return None
    record, updated, conflicts = reingest(services, existing, metadata, update=update_metadata)
    return IngestOutcome(record, True, 0.0, 0.0, 0.0, updated, conflicts)


def ingest_video(
    services: Services,
    source: bytes | Path,
    *,
    source_name: str,
    metadata: VideoMetadata = VideoMetadata(),
    sampling: Sampling = Sampling(),
    channel_order: str = "rgb",
    sha256: str | None = None,
    update_metadata: bool = False,
) -> IngestOutcome:
    """Decode, embed and store one video in one catalog transaction; idempotent by content sha256.

    `sampling` checked itself when it was made and is lowered here to the server's frame cap. A path is
    decoded from the file, never read into memory whole; `sha256` is the content's hash when the caller
    already computed it while receiving.
    """
    data, size = _source(source)
    sampling = check_header(services, source_name, size, metadata, sampling, channel_order)
    if sha256 is None:
        sha256 = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else _hash_file(data)
    known = ingest_stored(services, sha256, metadata, update_metadata=update_metadata)
    if known is not None:
        return known
    started = time.perf_counter()
    prepared = _decode(services, data, source_name, sampling, channel_order)
    if prepared.header_metadata is not None:  # a DICOM: its header (read in the worker, PHI policy applied)
        metadata = merge_metadata(prepared.header_metadata, metadata)
    decoded = time.perf_counter()
    cancellation.check()  # nobody waits for this video any more: do not encode it (once encoded, it is stored)
    # A caller that goes away while its frames are queued takes them out of the encoder's queue.
    embeddings = services.encoder.encode_frames(prepared.pixels, should_stop=_caller_gone)
    encoded = time.perf_counter()
    video = validate_video(
        NewVideo(
            sha256=sha256,
            source_name=source_name,
            size_bytes=size,
            fps=float(prepared.fps),
            total_frames=int(prepared.total_frames),
            width=int(prepared.width),
            height=int(prepared.height),
            model_identity=services.model.identity,
            metadata=metadata,
            frame_indices=prepared.frame_indices,
            timestamps=prepared.timestamps,
            embeddings=embeddings,
            thumbnails=prepared.thumbnails,
            thumbnails_withheld=prepared.thumbnails_withheld,
        )
    )
    # The store binds the model (identity, width) inside the ingest transaction, once.
    record, created = services.store.add_video(video)
    seconds = (decoded - started, encoded - decoded, time.perf_counter() - encoded)
    if created:
        log.info(
            "ingested video %d %s: %d frames (decode %.2fs, encode %.2fs, store %.3fs)",
            record.video_id,
            source_name,
            record.sampled_frames,
            *seconds,
        )
    return IngestOutcome(record, not created, *seconds)


def reingest(
    services: Services, stored: VideoRecord, metadata: VideoMetadata, *, update: bool = False
) -> tuple[VideoRecord, bool, tuple[MetadataConflict, ...]]:
    """Stored content uploaded again with metadata: (the video now, whether its metadata changed, the conflicts).

    The rule (docs/api.md, "Re-ingest"): what the store lacks is filled in; where the stored value differs from
    the upload's, the stored one is kept (an edit made with `tag` / UpdateVideoMetadata is not reverted) and the
    conflict reported, unless `update` (`ingest --update-metadata`) asks for the upload's values.
    """
    conflicts = _conflicts(stored.metadata, metadata, replaced=update)
    if not update and conflicts:
        fields = {f: None if any(c.field == f for c in conflicts) else getattr(metadata, f) for f in METADATA_FIELDS}
        differs = {c.field[len(TAG_PREFIX) :] for c in conflicts if c.field.startswith(TAG_PREFIX)}
        metadata = VideoMetadata(**fields, tags={k: v for k, v in metadata.tags.items() if k not in differs})
    change = MetadataChange(metadata)  # nothing removed: an upload only adds or overwrites
    if change.is_empty() or change.apply(stored.metadata) == stored.metadata:
        return stored, False, conflicts
    record, changed = apply_metadata_change(services, stored.video_id, change)
    return record, changed, conflicts


def _conflicts(stored: VideoMetadata, uploaded: VideoMetadata, *, replaced: bool) -> tuple[MetadataConflict, ...]:
    """The fields and tags both hold, with different values."""
    out = []
    for name in METADATA_FIELDS:
        before, after = getattr(stored, name), getattr(uploaded, name)
        if before is not None and after is not None and before != after:
            out.append(MetadataConflict(name, _shown(before), _shown(after), replaced))
    for key, value in uploaded.tags.items():
        if key in stored.tags and stored.tags[key] != value:
            out.append(MetadataConflict(TAG_PREFIX + key, stored.tags[key], value, replaced))
    return tuple(out)


def _shown(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def validate_video(video: NewVideo) -> NewVideo:
    """The one check of a video before it is stored (frame arrays, embeddings, thumbnails), normalised for the
    catalog; InvalidRequestError / TooLargeError saying what is wrong. Storage only asserts these."""
    emb = np.asarray(video.embeddings)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise InvalidRequestError(f"a video needs at least one frame embedding, got shape {emb.shape}")
    n = emb.shape[0]
    if n > MAX_FRAMES_PER_VIDEO:
        raise TooLargeError(f"{n} sampled frames in one video; the catalog holds at most {MAX_FRAMES_PER_VIDEO}")
    idx = np.asarray(video.frame_indices, dtype=np.int64).reshape(-1)
    ts = np.asarray(video.timestamps, dtype=np.float64).reshape(-1)
    if len(idx) != n or len(ts) != n:
        raise InvalidRequestError(f"{n} embeddings but {len(idx)} frame indices and {len(ts)} timestamps")
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if not np.isfinite(emb).all():
        raise InvalidRequestError("frame embeddings contain NaN or infinity")
    thumbs = video.thumbnails
    if thumbs is not None and len(thumbs) != n:
        raise InvalidRequestError(f"{n} embeddings but {len(thumbs)} thumbnails; give one per frame or none")
    return NewVideo(
        sha256=str(video.sha256),
        source_name=str(video.source_name),
        size_bytes=int(video.size_bytes),
        fps=float(video.fps),
        total_frames=int(video.total_frames),
        width=int(video.width),
        height=int(video.height),
        model_identity=str(video.model_identity),
        metadata=video.metadata,
        frame_indices=idx,
        timestamps=ts,
        embeddings=emb,
        thumbnails=None if thumbs is None else tuple(bytes(t) for t in thumbs),
        thumbnails_withheld=video.thumbnails_withheld,
    )


# ---- the steps --------------------------------------------------------------------------


def _decode(services: Services, data: bytes | Path, name: str, sampling: Sampling, channel_order: str) -> PreparedVideo:
    """Decoded, sampled and cropped in a decode worker process (a path is read there, not here)."""
    model = services.model
    options = PrepareOptions(
        sampling,
        channel_order=channel_order,
        mean=model.mean,
        std=model.std,
        image_size=model.image_size,
        thumbnails=services.config.media.thumbnails,
        max_frame_pixels=services.limits.max_frame_pixels,
        dicom_mask=services.config.media.dicom_mask,
        phi_policy=services.phi_policy,
    )
    return services.decode_pool.prepare(data, options, name=name, should_stop=_caller_gone)


def _source(source: bytes | Path) -> tuple[bytes | Path, int]:
    """The upload as bytes or a file path, and its size."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return data, len(data)
    path = Path(source)
    try:
        return path, path.stat().st_size
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc.strerror or exc}") from None


def _caller_gone() -> bool:
    """Whether the request this thread serves was cancelled or passed its deadline (see cancellation.py)."""
    try:
        cancellation.check()
    except RequestCancelledError:
        return True
    return False


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
