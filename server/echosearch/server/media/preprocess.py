"""EchoCLIP's preprocessing, shared by every decoder: the reference crop and resize, the CLIP normalisation,
and the record a decoder hands to the model (PreparedVideo).

Reproduces EchoCLIP's published reference (utils.crop_and_scale + open_clip preprocess_val) exactly: crop to
square, cut 10 % per side, OpenCV INTER_CUBIC to 224x224 uint8 (the published call, into one preallocated
batch), then /255 and CLIP-normalise on the batched tensor (ToTensor + Normalize).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from echosearch.server.records import VideoMetadata

ZOOM = 0.1
CHUNK = 16  # frames preprocessed together; bounds memory held as raw decoded frames


@dataclass(frozen=True)
class PreparedVideo:
    """Sampled frames ready for EchoClipModel.encode_frames, with where they came from."""

    pixels: torch.Tensor  # (n,3,S,S) float32 CLIP-normalised (prepare_video), or uint8 (decode_video)
    frame_indices: np.ndarray  # int64 (n,): index in decode (presentation) order
    timestamps: np.ndarray  # float64 (n,): seconds from the start of the stream
    fps: float
    width: int
    height: int
    # Frames in the stream: the decoded count when decoding reached the end, otherwise the number of
    # (non-empty) video packets demuxed without decoding; one packet is one frame for MJPG/H.264.
    total_frames: int
    # One JPEG of each sampled frame's model-input crop (media/thumbnail_jpeg.py); None when not asked for
    # or withheld.
    thumbnails: tuple[bytes, ...] | None = None
    # DICOM only: the header's allow-listed metadata, PatientID under the PHI policy, read in the decode
    # worker (media/dicom/header.py); None for a video.
    header_metadata: VideoMetadata | None = None
    # Why thumbnails asked for were not made (a THUMBNAILS_WITHHELD code of media/dicom/phi.py), else None.
    thumbnails_withheld: str | None = None


def crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the reference crop: centre square, then 10 % zoom; empty cuts skipped."""
    top, bottom, left, right = 0, height, 0, width
    if width > height:  # published: padding = int(round((w - r*h) / 2)); img[:, p:-p]
        p = int(round((width - height) / 2))
        if p > 0:
            left, right = p, width - p
    elif height > width:
        p = int(round((height - width) / 2))
        if p > 0:
            top, bottom = p, height - p
    pad_x = round(int((right - left) * ZOOM))
    pad_y = round(int((bottom - top) * ZOOM))
    # The reference slices [p:-p], which is empty when p == 0; we crop nothing instead.
    if pad_y > 0:
        top, bottom = top + pad_y, bottom - pad_y
    if pad_x > 0:
        left, right = left + pad_x, right - pad_x
    return top, bottom, left, right


def resize_uint8(frames: np.ndarray, image_size: int = 224) -> torch.Tensor:
    """(k,h,w,3) uint8 -> reference crop + OpenCV INTER_CUBIC resize -> (k,3,S,S) uint8, bit-exact with the published path.

    OpenCV's SIMD fixed-point resize is ~10x faster on a CPU than torch's float bicubic (which
    also rounds differently by one level on ~0.1 % of pixels); the call per frame is a C call
    into one preallocated batch, not a per-frame PIL round trip.
    """
    top, bottom, left, right = crop_box(frames.shape[1], frames.shape[2])
    out = np.empty((len(frames), image_size, image_size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        crop = frame[top:bottom, left:right]
        if crop.shape[:2] == (image_size, image_size):
            out[i] = crop
        else:
            cv2.resize(crop, (image_size, image_size), dst=out[i], interpolation=cv2.INTER_CUBIC)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def normalise(frames_u8: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(n,3,S,S) uint8 -> float32 /255, CLIP mean/std normalised (ToTensor + Normalize)."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return frames_u8.float().div_(255.0).sub_(m).div_(s)
