"""The frame-size rule every decoder (video, DICOM) applies before decoding a single frame."""

from __future__ import annotations

from echosearch.server.errors import InvalidVideoError
from echosearch.server.limits import Limits

DEFAULT_MAX_FRAME_PIXELS = Limits.max_frame_pixels  # --max-frame-pixels; limits.py owns the number


def check_frame_pixels(width: int, height: int, max_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> None:
    """InvalidVideoError naming the size when width x height is over `max_pixels` (one frame decoded is ~3 bytes/pixel)."""
    if width <= 0 or height <= 0:
        return  # the container does not say; the decoder checks the first frame it produces
    if width * height > max_pixels:
        raise InvalidVideoError(
            f"frames of {width}x{height} ({width * height / 1e6:.1f} MP) are over the server's limit of "
            f"{max_pixels / 1e6:.1f} MP per frame (--max-frame-pixels {max_pixels}); downscale the video"
        )
