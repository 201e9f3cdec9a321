"""The one media entry point: sniff the bytes, route them to the DICOM or the video decoder, same PreparedVideo out.

The decode process pool's workers call `prepare` (uint8 video crops: 4x less to ship between processes);
in-process callers use `prepare_media`. Nothing else needs to know which decoder ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from echosearch.client.sniff import HEAD_BYTES, looks_like_dicom
from echosearch.server.errors import InvalidVideoError
from echosearch.server.media.frame_limits import DEFAULT_MAX_FRAME_PIXELS
from echosearch.server.media.options import MediaOptions
from echosearch.server.media.thumbnails import crops_from_pixels, thumbnail_jpegs
from echosearch.server.media.video import PreparedVideo, Sampling, Source, decode_video, prepare_video

DEFAULT_DICOM_MASK = MediaOptions.dicom_mask  # why: docs/dicom.md, "Masking outside the scan region"


def is_dicom(source: Source) -> bool:
    """True when the bytes (or the file) are DICOM (DICM magic at offset 128, or a bare data set with a valid header)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return looks_like_dicom(bytes(source[:HEAD_BYTES]))
    with open(source, "rb") as f:
        return looks_like_dicom(f.read(HEAD_BYTES))


def prepare_media(
    source: Source,
    sampling: Sampling = Sampling(),
    *,
    channel_order: str = "rgb",
    mean: tuple[float, ...],
    std: tuple[float, ...],
    image_size: int,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    dicom_mask: str = DEFAULT_DICOM_MASK,
    thumbnails: bool = False,
) -> PreparedVideo:
    """Decode, sample and preprocess a video or DICOM file (bytes, or a path read whole when it is DICOM).

    `mean`, `std` and `image_size` come from the loaded model (EchoClipModel.mean/std/image_size); frames
    over `max_frame_pixels` are refused from the declared size before any is decoded. With `thumbnails`,
    also a small JPEG of every sampled frame's model-input crop.
    """
    if is_dicom(source):
        if not isinstance(source, (bytes, bytearray, memoryview)):
            with open(source, "rb") as f:  # pydicom holds the pixel data in memory anyway
                source = f.read()
        try:
            from echosearch.server.media.dicom import prepare_dicom  # pydicom only where DICOM arrives
        except ImportError as exc:
            raise InvalidVideoError(
                f"this is a DICOM file but DICOM support is not installed ({exc.name} is missing): "
                "pip install 'echosearch[dicom]'"
            ) from None
        prepared = prepare_dicom(
            source,
            sampling,
            channel_order=channel_order,
            mean=mean,
            std=std,
            image_size=image_size,
            max_frame_pixels=max_frame_pixels,
            mask=dicom_mask,
        )
        if thumbnails:  # the DICOM reader hands back normalised pixels: undo the normalisation exactly
            crops = crops_from_pixels(prepared.pixels, mean, std)
            prepared = dataclasses.replace(
                prepared, thumbnails=tuple(thumbnail_jpegs(crops, channel_order=channel_order))
            )
        return prepared
    return prepare_video(
        source,
        sampling,
        channel_order=channel_order,
        mean=mean,
        std=std,
        image_size=image_size,
        max_frame_pixels=max_frame_pixels,
        thumbnails=thumbnails,
    )


@dataclass(frozen=True)
class PrepareOptions:
    """How the decode workers turn an upload into model input: which frames, channel order, the model's preprocessing."""

    sampling: Sampling = Sampling()
    channel_order: str = "rgb"
    mean: tuple[float, ...] = ()  # the model's; needed where pixels are normalised in the worker (DICOM)
    std: tuple[float, ...] = ()
    image_size: int = 224
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    dicom_mask: str = DEFAULT_DICOM_MASK
    thumbnails: bool = False  # also a small JPEG of each sampled frame's crop (media/thumbnails.py)


def prepare(source: Source, options: PrepareOptions | None = None) -> PreparedVideo:
    """What a decode worker runs: a video as (n,3,S,S) uint8 crops (normalised later, on the model's device),
    a DICOM file through prepare_media (normalised float pixels; the encoder takes either)."""
    o = options or PrepareOptions()
    if is_dicom(source):
        assert o.mean and o.std, "DICOM is normalised in the worker: pass the model's mean and std"
        return prepare_media(
            source, o.sampling, channel_order=o.channel_order, mean=o.mean, std=o.std, image_size=o.image_size,
            max_frame_pixels=o.max_frame_pixels, dicom_mask=o.dicom_mask, thumbnails=o.thumbnails,
        )  # fmt: skip
    return decode_video(
        source, o.sampling, channel_order=o.channel_order, image_size=o.image_size, thumbnails=o.thumbnails,
        max_frame_pixels=o.max_frame_pixels,
    )  # fmt: skip
