"""A DICOM file -> its parsed header and where its frames are, checked to be an image we can decode.

No pixel is decoded here, and nothing is inflated past what the header declares: a deflated file's pixels
stay deflated (media/dicom/deflated.py) until the frames are read. Every problem with the file is an
InvalidVideoError whose message says what is wrong.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset as read_elements
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from echosearch.server.errors import InvalidVideoError
from echosearch.server.media.dicom.deflated import DeflatedPixels, read_deflated
from echosearch.server.media.frame_limits import DEFAULT_MAX_FRAME_PIXELS, check_frame_pixels

# pydicom's value validation warns with the offending value in the message (a patient name, say): never log it.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

PHOTOMETRIC = {
    "MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR",
}  # fmt: skip
FILE_META_CAP = 64 << 10  # the file meta group is a few hundred bytes


@dataclass(frozen=True)
class DicomImage:
    """A DICOM image ready to decode: its header, geometry, and its frames (encoded, native or still deflated)."""

    ds: Dataset  # the whole data set; a deflated file's without its pixel data
    frames: int
    rows: int
    columns: int
    encoded: list[bytes] | None = None  # encapsulated syntaxes: one compressed frame each
    deflated: DeflatedPixels | None = None  # deflated native pixels (otherwise native pixels are ds.PixelData)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one native frame."""
        return get_expected_length(self.ds, unit="bytes") // self.frames


def read_image(source: bytes | bytearray | memoryview, max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> DicomImage:
    """Parse and check a DICOM image; frames over `max_frame_pixels` are refused from the header, before any work."""
    ds, deflated = _parse(source)
    check_frame_pixels(int(ds.get("Columns") or 0), int(ds.get("Rows") or 0), max_frame_pixels)
    n, rows, cols = check_image(ds, has_pixels="PixelData" in ds or deflated is not None)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return DicomImage(ds, n, rows, cols, encoded=_encapsulated_frames(ds.PixelData, n))
    _check_native_length(ds, n, rows, cols, deflated.length if deflated is not None else len(ds.PixelData))
    return DicomImage(ds, n, rows, cols, deflated=deflated)


def read_dataset(source: bytes | bytearray | memoryview) -> Dataset:
    """The data set of a DICOM file, up to its pixel data when it is deflated; InvalidVideoError when not DICOM."""
    return _parse(source)[0]


def check_image(ds: Dataset, *, has_pixels: bool) -> tuple[int, int, int]:
    """(frames, rows, columns) of an image we can decode; InvalidVideoError names what is missing or wrong."""
    sop_class = ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    if sop_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        raise InvalidVideoError("this is a DICOMDIR (a media directory), not an image; ingest the files it lists")
    if not has_pixels:
        kind = getattr(sop_class, "name", None) or str(sop_class or "unknown SOP class")
        raise InvalidVideoError(f"not an image: a DICOM {kind} object has no pixel data")
    ts = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise InvalidVideoError(f"unsupported transfer syntax {ts.name} ({ts})") from None
    if not decoder.is_available:
        raise InvalidVideoError(
            f"no decoder installed for transfer syntax {ts.name} ({ts}): pip install 'echosearch[dicom]'"
        )
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in PHOTOMETRIC:
        raise InvalidVideoError(
            f"unsupported photometric interpretation {photometric or '(missing)'!r}; "
            f"supported: {', '.join(sorted(PHOTOMETRIC))}"
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        n = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidVideoError(f"the image header is incomplete ({exc})") from None
    if rows < 1 or cols < 1 or n < 1:
        raise InvalidVideoError(f"the image header declares {n} frames of {rows}x{cols} pixels")
    return n, rows, cols


def _parse(source: bytes | bytearray | memoryview) -> tuple[Dataset, DeflatedPixels | None]:
    if len(source) == 0:
        raise InvalidVideoError("the file is empty (0 bytes)")
    meta, meta_end = _file_meta(source)
    if meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        ds, deflated = read_deflated(memoryview(source)[meta_end:])
        ds.file_meta = meta
        return ds, deflated
    try:
        ds = pydicom.dcmread(io.BytesIO(source), force=True)
    except Exception as exc:  # pydicom raises many kinds on a damaged header
        raise InvalidVideoError(f"not a readable DICOM file: the header could not be parsed ({exc})") from exc
    if "TransferSyntaxUID" not in ds.file_meta:
        # A bare data set (no file meta) is stored uncompressed in the encoding pydicom found it in.
        implicit, _little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds, None


def _file_meta(source: bytes | bytearray | memoryview) -> tuple[FileMetaDataset | None, int]:
    """(the file meta group, offset where the data set starts), read alone: it says how the rest is encoded."""
    start = 132 if bytes(source[128:132]) == b"DICM" else 0
    if bytes(source[start : start + 2]) != b"\x02\x00":
        return None, start  # a bare data set without file meta
    fp = DicomBytesIO(bytes(source[start : start + FILE_META_CAP]))
    try:  # the file meta group is explicit VR little endian by definition
        meta = read_elements(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    except Exception:  # a damaged file meta: pydicom's full parse below reports it
        return None, start
    return FileMetaDataset(meta), start + fp.tell()


def _encapsulated_frames(data: bytes, n: int) -> list[bytes]:
    """The compressed frames of encapsulated pixel data: exactly Number of Frames of them."""
    try:
        encoded = list(generate_frames(data, number_of_frames=n))
    except Exception as exc:
        raise InvalidVideoError(f"broken pixel data: the encapsulated frames cannot be parsed ({exc})") from exc
    if len(encoded) != n:
        raise InvalidVideoError(
            f"the frame count disagrees with the data: Number of Frames is {n} but the pixel data hold {len(encoded)}"
        )
    return encoded


def _check_native_length(ds: Dataset, n: int, rows: int, cols: int, length: int) -> None:
    """Native pixel data of `length` bytes hold exactly the declared Number of Frames."""
    expected = get_expected_length(ds, unit="bytes")
    per_frame = max(1, expected // n)
    if length < expected:
        raise InvalidVideoError(
            f"truncated pixel data: {n} frames of {rows}x{cols} need {expected} bytes, the file holds {length} "
            f"({length // per_frame} whole frames)"
        )
    if length >= expected + per_frame:
        raise InvalidVideoError(
            f"the frame count disagrees with the data: Number of Frames is {n} "
            f"but the pixel data hold {length // per_frame} frames"
        )
