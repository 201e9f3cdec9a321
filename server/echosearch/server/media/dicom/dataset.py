"""A DICOM file -> a pydicom data set checked to be an image we can decode (no pixel decoding here).

Every problem with the file is an InvalidVideoError whose message says what is wrong.
"""

from __future__ import annotations

import io

import pydicom
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MediaStorageDirectoryStorage

from echosearch.server.errors import InvalidVideoError

# pydicom's value validation warns with the offending value in the message (a patient name, say): never log it.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}


def read_dataset(source: bytes | bytearray | memoryview) -> Dataset:
    """Parse a DICOM file (with or without its preamble and file meta); InvalidVideoError when it is not one."""
    if len(source) == 0:
        raise InvalidVideoError("the file is empty (0 bytes)")
    try:
        ds = pydicom.dcmread(io.BytesIO(bytes(source)), force=True)
    except Exception as exc:  # pydicom raises many kinds on a damaged header
        raise InvalidVideoError(f"not a readable DICOM file: the header could not be parsed ({exc})") from exc
    if "TransferSyntaxUID" not in ds.file_meta:
        # A bare data set (no file meta) is stored uncompressed in the encoding pydicom found it in.
        implicit, _little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


def check_image(ds: Dataset) -> tuple[int, int, int, list[bytes] | None]:
    """(frames, rows, columns, encoded frames or None if native) of an image we can decode.

    InvalidVideoError names what is missing or wrong.
    """
    sop_class = ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    if sop_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        raise InvalidVideoError("this is a DICOMDIR (a media directory), not an image; ingest the files it lists")
    if "PixelData" not in ds:
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
    return n, rows, cols, _check_frame_count(ds, n, rows, cols)


def _check_frame_count(ds: Dataset, n: int, rows: int, cols: int) -> list[bytes] | None:
    """The pixel data hold exactly the declared Number of Frames (no decoding); the encoded frames if encapsulated."""
    data = ds.PixelData
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        try:
            encoded = list(generate_frames(data, number_of_frames=n))
        except Exception as exc:
            raise InvalidVideoError(f"broken pixel data: the encapsulated frames cannot be parsed ({exc})") from exc
        if len(encoded) != n:
            raise InvalidVideoError(
                f"the frame count disagrees with the data: Number of Frames is {n} but the pixel data hold {len(encoded)}"
            )
        return encoded
    expected = get_expected_length(ds, unit="bytes")
    per_frame = max(1, expected // n)
    if len(data) < expected:
        raise InvalidVideoError(
            f"truncated pixel data: {n} frames of {rows}x{cols} need {expected} bytes, the file holds {len(data)} "
            f"({len(data) // per_frame} whole frames)"
        )
    if len(data) >= expected + per_frame:
        raise InvalidVideoError(
            f"the frame count disagrees with the data: Number of Frames is {n} "
            f"but the pixel data hold {len(data) // per_frame} frames"
        )
    return None
