"""Video bytes/path -> decoded, sampled, EchoCLIP-preprocessed frame tensor (PyAV + batched torch).

Decoding only: which frames is records.Sampling, the crop/resize/normalise is media/preprocess.py.
Only the frames the sampling needs are decoded; raw frames are dropped chunk by chunk.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from echosearch.server.errors import InvalidRequestError, InvalidVideoError, TooLargeError
from echosearch.server.media.frame_limits import DEFAULT_MAX_FRAME_PIXELS, check_frame_pixels
from echosearch.server.media.preprocess import CHUNK, PreparedVideo, normalise, resize_uint8
from echosearch.server.media.thumbnail_jpeg import thumbnail_jpegs
from echosearch.server.records import REFERENCE_WINDOW, Sampling

log = logging.getLogger(__name__)

TEXT_FORMATS = {"tty"}
TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}
CHUNK_BYTES = (
    64 << 20
)  # with CHUNK (frames), bounds memory held as raw decoded frames: large frames are preprocessed a few at a time
# Codecs whose every packet is one independently decodable frame, in presentation order: frames the
# sampling does not keep need not be decoded at all (MJPG AVI is the usual echo export).
INTRA_ONLY_CODECS = {"mjpeg", "png", "rawvideo", "bmp", "tiff", "qtrle"}
Source = bytes | bytearray | memoryview | str | os.PathLike


log = logging.getLogger(__name__)


def prepare_video(
    source: Source,
    sampling: Sampling = Sampling(),
    *,
    channel_order: str = "rgb",
    mean: tuple[float, ...],
    std: tuple[float, ...],
    image_size: int,
    thumbnails: bool = False,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
) -> PreparedVideo:
    """Decode `source` (bytes or path), sample frames and preprocess them; InvalidVideoError if it is not a video.

    `mean`, `std` and `image_size` come from the loaded model (EchoClipModel.mean/std/image_size).
    With `thumbnails`, also a small JPEG of every sampled frame's crop (before normalisation).
    Frames over `max_frame_pixels` are refused from the stream's declared size, before any is decoded.
    """
    decoded = decode_video(
        source,
        sampling,
        channel_order=channel_order,
        image_size=image_size,
        thumbnails=thumbnails,
        max_frame_pixels=max_frame_pixels,
    )
    return replace(decoded, pixels=normalise(decoded.pixels, mean, std))


def decode_video(
    source: Source,
    sampling: Sampling = Sampling(),
    *,
    channel_order: str = "rgb",
    image_size: int,
    thumbnails: bool = False,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
) -> PreparedVideo:
    """prepare_video up to the crop and resize: pixels are (n,3,S,S) uint8, 4x smaller to ship between processes."""
    assert channel_order in ("rgb", "bgr"), channel_order  # the ingest service validated the request
    n_hint = None
    if sampling.mode == "count":
        n_hint = _count_packets(source)  # evenly spaced needs n up front; demuxing is cheap
    decoded = _decode(source, sampling, n_hint, channel_order, image_size, max_frame_pixels)
    if sampling.mode == "count" and decoded.resample_n is not None:  # stream shorter than its packets: resample
        decoded = _decode(source, sampling, decoded.resample_n, channel_order, image_size, max_frame_pixels)
    jpegs = tuple(thumbnail_jpegs(decoded.frames_u8, channel_order=channel_order)) if thumbnails else None
    return PreparedVideo(
        decoded.frames_u8,
        decoded.frame_indices,
        decoded.timestamps,
        decoded.fps,
        decoded.width,
        decoded.height,
        decoded.total_frames,
        jpegs,
    )


def _open(source: Source) -> av.container.InputContainer:
    """Open bytes or a path with PyAV; InvalidVideoError naming the problem."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidVideoError("the video is empty (0 bytes)")
        target: object = io.BytesIO(bytes(source))
        name = f"<{len(source)} bytes>"
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidVideoError(f"no such video file: {path}")
        if path.stat().st_size == 0:
            raise InvalidVideoError(f"the video file is empty (0 bytes): {path}")
        target, name = str(path), str(path)
    try:
        container = av.open(target, mode="r")
    except Exception as exc:  # FFmpeg's probe failing is the normal case for non-video input
        raise InvalidVideoError(f"not a readable video {name}: FFmpeg could not open it ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise InvalidVideoError(f"not a video {name}: the file has no video stream")
    if container.format.name in TEXT_FORMATS or container.streams.video[0].codec_context.name in TEXT_CODECS:
        container.close()  # FFmpeg renders .txt files as "ANSI art" video; that is a text file, not an echo
        raise InvalidVideoError(f"not a video {name}: it is a text file")
    return container


def _count_packets(source: Source) -> int:
    """Non-empty video packets in the stream (= frames for MJPG/H.264), without decoding."""
    with _open(source) as container:
        stream = container.streams.video[0]
        try:
            return sum(1 for p in container.demux(stream) if p.size)
        except Exception as exc:
            raise InvalidVideoError(f"corrupt video: demuxing failed ({exc})") from exc


@dataclass(frozen=True)
class _Decoded:
    """The sampled frames of one decode pass, resized but not yet normalised."""

    frames_u8: torch.Tensor  # (n,3,S,S) uint8
    frame_indices: np.ndarray
    timestamps: np.ndarray
    fps: float
    width: int
    height: int
    total_frames: int
    resample_n: int | None  # count mode only: the true frame count when the stream was shorter than its packets


def _decode(
    source: Source, sampling: Sampling, n_hint: int | None, channel_order: str, image_size: int, max_pixels: int
) -> _Decoded:
    """Decode the frames the sampling needs."""
    fmt = "rgb24" if channel_order == "rgb" else "bgr24"
    with _open(source) as container:
        stream = container.streams.video[0]
        check_frame_pixels(stream.codec_context.width, stream.codec_context.height, max_pixels)
        declared_seconds = _declared_seconds(container, stream)
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        keep, stop = _plan(sampling, n_hint)
        kept: list[torch.Tensor] = []
        indices: list[int] = []
        times: list[float] = []
        pending: list[np.ndarray] = []
        pending_bytes = 0
        decoded = 0
        packets = container.demux(stream)
        # One swscale context for the whole video, not one per frame.
        reformatter = VideoReformatter()
        fed = [0]  # non-empty packets handed to the decoder (frames still buffered in it count too)
        skip = None
        if stream.codec_context.name in INTRA_ONLY_CODECS:
            # One packet in, its frame out, synchronously: lets us skip the packets we do not keep.
            stream.thread_type = "SLICE"
            skip = lambda i: not keep(i)  # noqa: E731
        try:
            for frame in _frames(packets, fed, skip):
                if frame is None:  # an intra-only frame the sampling does not keep: counted, not decoded
                    decoded += 1
                    if stop is not None and decoded >= stop:
                        break
                    continue
                if keep(decoded):
                    if len(indices) >= sampling.max_frames:
                        raise TooLargeError(
                            f"sampling {sampling.mode!r} selects more than max_frames={sampling.max_frames} frames "
                            "from this video (the request's max_frames, or the server's --max-frames-per-video); "
                            "use sampling 'every' with a larger step or 'count'"
                        )
                    check_frame_pixels(frame.width, frame.height, max_pixels)  # a stream may change size mid-way
                    indices.append(decoded)
                    times.append(_seconds(frame, stream, decoded, fps))
                    pending.append(reformatter.reformat(frame, format=fmt).to_ndarray())
                    pending_bytes += pending[-1].nbytes
                    if (
                        len(pending) >= CHUNK
                        or pending_bytes >= CHUNK_BYTES
                        or (pending and pending[0].shape != pending[-1].shape)
                    ):
                        kept.extend(_flush(pending, image_size))
                        pending_bytes = 0
                decoded += 1
                if stop is not None and decoded >= stop:
                    break
            kept.extend(_flush(pending, image_size))
            reached_end = stop is None or decoded < stop
            total = decoded if reached_end else fed[0] + _remaining_frames(packets)
        except (TooLargeError, InvalidRequestError, InvalidVideoError):
            raise
        except Exception as exc:  # a corrupt packet mid-stream: name where it happened
            raise InvalidVideoError(f"corrupt video: decoding failed after {decoded} frames ({exc})") from exc
        width, height = stream.codec_context.width, stream.codec_context.height
    if decoded == 0:
        raise InvalidVideoError("the video contains no decodable frames")
    if declared and total < declared - max(1, declared // 100):
        raise InvalidVideoError(
            f"truncated video: the container declares {declared} frames but the stream ends after {total}"
        )
    _warn_if_short(declared, declared_seconds, fps, total, decoded, stop)
    resample = None
    if sampling.mode == "count" and n_hint is not None and total < n_hint:
        resample = total
    frames_u8 = torch.cat(kept) if kept else torch.empty((0, 3, image_size, image_size), dtype=torch.uint8)
    return _Decoded(
        frames_u8, np.asarray(indices, np.int64), np.asarray(times, np.float64), fps, width, height, total, resample
    )


def _declared_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """The duration the container or the stream header declares, in seconds (None when neither says)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _warn_if_short(
    declared: int, declared_seconds: float | None, fps: float, total: int, decoded: int, stop: int | None
) -> None:
    """WARNING when the decoded frames disagree with what the container declares; the decoded count is stored."""
    if stop is not None and decoded >= stop:
        return  # decoding stopped early on purpose: `total` counts packets, not decoded frames
    if declared and total != declared:
        log.warning("the container declares %d frames but %d were decoded; storing %d", declared, total, total)
    elif not declared and declared_seconds and fps > 0:
        expected = declared_seconds * fps
        if abs(total - expected) > max(2.0, 0.05 * expected):
            log.warning(
                "the container declares %.2fs (about %.0f frames at %.3g fps) but %d frames were decoded; storing %d",
                declared_seconds,
                expected,
                fps,
                total,
                total,
            )


def _plan(sampling: Sampling, n_hint: int | None) -> tuple[Callable[[int], bool], int | None]:
    """(keep(index), stop-after-this-many-decoded or None) for a sampling."""
    if sampling.mode == "reference":
        return (lambda i: i % 2 == 0), REFERENCE_WINDOW
    if sampling.mode == "all":
        return (lambda i: True), None
    if sampling.mode == "every":
        return (lambda i: i % sampling.step == 0), None
    wanted = set(sampling.indices(n_hint or 0).tolist())
    return (lambda i: i in wanted), (max(wanted) + 1 if wanted else None)


def _frames(
    packets: Iterator[av.Packet], fed: list[int], skip: Callable[[int], bool] | None = None
) -> Iterator[av.VideoFrame | None]:
    """Decoded frames, pulled packet by packet so decoding can stop early; counts packets in fed[0].

    With `skip` (intra-only codecs only), the i-th non-empty packet is not decoded when skip(i)
    and None stands in for its frame.
    """
    for packet in packets:
        if packet.size:
            index = fed[0]
            fed[0] += 1
            if skip is not None and skip(index):
                yield None
                continue
            if skip is not None:
                # Keep the 1:1 packet/frame count even if a damaged packet decodes to nothing.
                yield from packet.decode() or [None]
                continue
        yield from packet.decode()  # the final (empty) packet flushes the decoder


def _remaining_frames(packets: Iterator[av.Packet]) -> int:
    """Count the rest of the stream's non-empty packets without decoding them (cheap)."""
    try:
        return sum(1 for p in packets if p.size)
    except Exception:
        log.warning("could not demux the rest of the stream to count its frames", exc_info=True)
        return 0


def _seconds(frame: av.VideoFrame, stream: av.video.stream.VideoStream, index: int, fps: float) -> float:
    """Presentation time from the stream start; index/fps when the frame has no timestamp."""
    if frame.pts is not None and stream.time_base is not None:
        return float((frame.pts - (stream.start_time or 0)) * stream.time_base)
    return index / fps if fps > 0 else 0.0


def _flush(pending: list[np.ndarray], image_size: int) -> list[torch.Tensor]:
    """Preprocess the pending raw frames (grouped by shape) to uint8 224s and drop the raw ones."""
    out: list[torch.Tensor] = []
    while pending:
        shape = pending[0].shape
        group = [f for f in pending if f.shape == shape]
        pending[:] = [f for f in pending if f.shape != shape]
        out.append(resize_uint8(np.stack(group), image_size))
    return out
