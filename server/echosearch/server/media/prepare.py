"""The one media entry point: sniff the bytes, route them to the DICOM or the video decoder, same PreparedVideo out.

The decode process pool's workers call `prepare` (uint8 crops: 4x less to ship between processes);
in-process callers use `prepare_media` (normalised pixels). Nothing else needs to know which decoder ran.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from echosearch.server.errors import InvalidVideoError
from echosearch.server.media.dicom.phi import OFFLINE_POLICY, PhiPolicy
from echosearch.server.media.frame_limits import DEFAULT_MAX_FRAME_PIXELS
from echosearch.server.media.options import MediaOptions
from echosearch.server.media.preprocess import PreparedVideo, normalise
from echosearch.server.media.video import Source, decode_video
from echosearch.server.records import Sampling
from echosearch.sniff import is_dicom

DEFAULT_DICOM_MASK = MediaOptions.dicom_mask  # why: docs/dicom.md, "Masking outside the scan region"


@dataclass(frozen=True)
class PrepareOptions:
    """How the decode workers turn an upload into model input: which frames, channel order, the model's preprocessing."""

    sampling: Sampling = Sampling()
    channel_order: str = "rgb"
    mean: tuple[float, ...] = ()  # the model's; used where pixels are normalised in-process (prepare_media)
    std: tuple[float, ...] = ()
    image_size: int = 224
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    dicom_mask: str = DEFAULT_DICOM_MASK
    thumbnails: bool = False  # also a small JPEG of each sampled frame's crop (media/thumbnail_jpeg.py)
    # DICOM: PatientID of the header metadata, and whether thumbnails may be kept (docs/dicom.md).
    phi_policy: PhiPolicy = OFFLINE_POLICY


def prepare(source: Source, options: PrepareOptions | None = None) -> PreparedVideo:
    """What a decode worker runs: a video or DICOM file as (n,3,S,S) uint8 crops, normalised later on the
    model's device; for DICOM also the header's metadata under the PHI policy (`header_metadata`)."""
    o = options or PrepareOptions()
    if is_dicom(source):
        return _decode_dicom(source, o)
    return decode_video(
        source, o.sampling, channel_order=o.channel_order, image_size=o.image_size, thumbnails=o.thumbnails,
        max_frame_pixels=o.max_frame_pixels,
    )  # fmt: skip


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
    phi_policy: PhiPolicy = OFFLINE_POLICY,
) -> PreparedVideo:
    """Decode, sample and preprocess a video or DICOM file in this process (bytes or a path); normalised pixels.

    `mean`, `std` and `image_size` come from the loaded model (EchoClipModel.mean/std/image_size); the other
    options are PrepareOptions'. Frames over `max_frame_pixels` are refused from the declared size before any
    is decoded. With `thumbnails`, also a small JPEG of every sampled frame's model-input crop (for DICOM,
    only where docs/dicom.md says so).
    """
    options = PrepareOptions(
        sampling, channel_order, mean, std, image_size, max_frame_pixels, dicom_mask, thumbnails, phi_policy
    )
    decoded = prepare(source, options)
    return replace(decoded, pixels=normalise(decoded.pixels, mean, std))


def _decode_dicom(source: Source, o: PrepareOptions) -> PreparedVideo:
    if not isinstance(source, (bytes, bytearray, memoryview)):
        with open(source, "rb") as f:  # pydicom holds the pixel data in memory anyway
            source = f.read()
    try:
        from echosearch.server.media.dicom.reader import decode_dicom  # pydicom only where DICOM arrives
    except ImportError as exc:
        raise InvalidVideoError(
            f"this is a DICOM file but DICOM support is not installed ({exc.name} is missing): "
            "pip install 'echosearch[dicom]'"
        ) from None
    return decode_dicom(
        source, o.sampling, channel_order=o.channel_order, image_size=o.image_size, mask=o.dicom_mask,
        phi_policy=o.phi_policy, thumbnails=o.thumbnails, max_frame_pixels=o.max_frame_pixels,
    )  # fmt: skip
