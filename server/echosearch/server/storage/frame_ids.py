"""The frame-id scheme, in one place: frame_id = (video_id << FRAME_BITS) | position.

A frame's video follows from its id alone, so the index (which stores only frame ids) can group hits by
video and a video's frames are one contiguous id range in the catalog.
"""

from __future__ import annotations

import numpy as np

FRAME_BITS = 20
MAX_FRAMES_PER_VIDEO = 1 << FRAME_BITS


def frame_ids_for(video_id: int, n_frames: int) -> np.ndarray:
    """The catalog frame ids of a video with `n_frames` stored frames."""
    return (np.int64(video_id) << FRAME_BITS) + np.arange(n_frames, dtype=np.int64)


def video_of_frames(frame_ids: np.ndarray) -> np.ndarray:
    """The video id owning each frame id."""
    return np.asarray(frame_ids, dtype=np.int64) >> FRAME_BITS


def frame_id_range(video_id: int) -> tuple[int, int]:
    """The half-open id range [lo, hi) that holds every frame of `video_id`."""
    lo = int(video_id) << FRAME_BITS
    return lo, lo + MAX_FRAMES_PER_VIDEO
