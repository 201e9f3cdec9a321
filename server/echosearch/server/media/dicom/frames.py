"""The frames of a checked DICOM image that the sampling keeps, decoded to arrays (RGB, or 2D monochrome).

Only the frames the sampling keeps are decoded, and a compressed frame only after its own header agreed
with the DICOM header (media/dicom/frame_headers.py). JPEG Baseline in the colour spaces scanners write is
decoded by libjpeg-turbo (Pillow): it upsamples subsampled chroma as libjpeg does, so 4:2:0 colour agrees with
pydicom's reference decode, and it hands back RGB without a numpy colour conversion. pydicom's pixel-data
plugins decode the rest: pylibjpeg-libjpeg for the other JPEG processes and JPEG-LS, pylibjpeg-openjpeg for
JPEG 2000 and HTJ2K, pylibjpeg-rle for RLE; native pixels need none. PALETTE COLOR goes through the file's
lookup tables (pydicom's apply_color_lut).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, iter_pixels
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

from echosearch.server.errors import InvalidVideoError
from echosearch.server.media.dicom.dataset import DicomImage
from echosearch.server.media.dicom.frame_headers import FrameHeader, jpeg_end, read_frame_header

# JPEG Baseline in these colour spaces (what scanners write) is decoded by libjpeg-turbo straight to RGB
# (or grey); its YCbCr conversion and chroma upsampling are libjpeg's.
FAST_JPEG_MODES = {"YBR_FULL_422": "RGB", "YBR_FULL": "RGB", "MONOCHROME2": "L"}
# What a native frame needs to be decoded on its own (a deflated file's frames are read one at a time).
IMAGE_PIXEL_KEYWORDS = (
    "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation",
)  # fmt: skip


def decoded_frames(image: DicomImage, indices: list[int]) -> Iterator[np.ndarray]:
    """The frames at `indices` (ascending), decoded, in order; PALETTE COLOR through its lookup tables."""
    photometric = str(image.ds.PhotometricInterpretation).strip()
    for frame in _frames(image, indices, photometric):
        yield _palette_to_rgb(frame, image.ds) if photometric == "PALETTE COLOR" else frame


def _frames(image: DicomImage, indices: list[int], photometric: str) -> Iterator[np.ndarray]:
    ds, encoded = image.ds, image.encoded
    if image.deflated is not None:
        for raw in image.deflated.frames(indices, image.frame_bytes, image.frames):
            yield _native_frame(ds, raw)
    elif encoded is None:
        yield from iter_pixels(ds, indices=indices, as_rgb=True)
    elif ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit and photometric in FAST_JPEG_MODES:
        for index in indices:
            header = check_frame_header(encoded[index], image, index)
            assert header is not None  # JPEG Baseline frames have one
            yield _jpeg_baseline(encoded[index], header.scan_start, FAST_JPEG_MODES[photometric])
    else:
        for index in indices:
            check_frame_header(encoded[index], image, index)
        yield from iter_pixels(ds, indices=indices, as_rgb=True)


def check_frame_header(data: bytes, image: DicomImage, index: int) -> FrameHeader | None:
    """The header of compressed frame `index` (None for RLE, whose size is the DICOM header's by construction);
    InvalidVideoError when it declares another size or sample count than the DICOM header (before decoding)."""
    if image.ds.file_meta.TransferSyntaxUID == RLELossless:
        return None
    header = read_frame_header(data)
    samples = int(image.ds.get("SamplesPerPixel") or 1)
    if (header.columns, header.rows) != (image.columns, image.rows):
        raise InvalidVideoError(
            f"broken pixel data: frame {index} of {image.frames} disagrees with the DICOM header: "
            f"the JPEG data say {header.columns}x{header.rows}, the header says {image.columns}x{image.rows}"
        )
    if header.components != samples:
        raise InvalidVideoError(
            f"broken pixel data: frame {index} of {image.frames} disagrees with the DICOM header: "
            f"the JPEG data have {header.components} components, the header says {samples} samples per pixel"
        )
    return header


def _jpeg_baseline(data: bytes, scan_start: int, mode: str) -> np.ndarray:
    """One JPEG Baseline frame -> (rows, cols, 3) RGB or (rows, cols) grey, whatever padding follows its EOI."""
    end = jpeg_end(data, scan_start)
    # A decoder conceals damage instead of failing: a JPEG whose scan does not reach EOI was cut short.
    if end is None:
        raise ValueError("the JPEG data end before its end-of-image marker (truncated)")
    with Image.open(io.BytesIO(data[:end])) as picture:
        picture.load()
        if picture.mode != mode:
            picture = picture.convert(mode)
        return np.asarray(picture)


def _native_frame(ds: Dataset, raw: bytes) -> np.ndarray:
    """One native frame's bytes -> its array, decoded by pydicom as a one-frame image."""
    one = Dataset()
    one.file_meta = FileMetaDataset()
    one.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in IMAGE_PIXEL_KEYWORDS:
        if keyword in ds:
            setattr(one, keyword, ds[keyword].value)
    one.NumberOfFrames = 1
    one.PixelData = raw
    return next(iter_pixels(one, as_rgb=True))


def _palette_to_rgb(indices: np.ndarray, ds: Dataset) -> np.ndarray:
    """PALETTE COLOR indices -> uint8 RGB through the file's lookup tables (8- or 16-bit entries)."""
    rgb = apply_color_lut(indices, ds)[..., :3]
    if rgb.dtype == np.uint8:
        return rgb
    return ((rgb.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # 16-bit entries span 0..65535
