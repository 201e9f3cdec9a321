"""The one media entry point the decode workers call: a source (path or bytes) -> sampled uint8 model-input frames.

Formats dispatch here (today PyAV video; a DICOM reader plugs in beside it), so the decode pool,
the engine and the bulk path never hard-wire one decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from echosearch.server.media.video import PreparedVideo, Sampling, Source, decode_video


@dataclass(frozen=True)
class PrepareOptions:
    """How to turn a source into model input: which frames, channel order, model image size."""

    sampling: Sampling = Sampling()
    channel_order: str = "rgb"
    image_size: int = 224


def prepare(source: Source, options: PrepareOptions = PrepareOptions()) -> PreparedVideo:
    """Decode `source`, sample and crop/resize its frames: PreparedVideo with (n,3,S,S) uint8 pixels."""
    return decode_video(source, options.sampling, channel_order=options.channel_order, image_size=options.image_size)
