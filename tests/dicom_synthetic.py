"""DICOM files made from frames with pydicom, for tests and benchmarks (synthetic data, planted fake PHI)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
US_MULTIFRAME_RETIRED = "1.2.840.10008.5.1.4.1.1.3"  # what old scanners still send
US_IMAGE_RETIRED = "1.2.840.10008.5.1.4.1.1.6"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "jpeg": JPEGBaseline8Bit,
    "jpegls": JPEGLSLossless,
    "j2k": JPEG2000Lossless,
    "rle": RLELossless,
}

# Pillow's JPEG chroma subsampling: what a scanner's JPEG Baseline frames may use.
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}

# Values planted in every test file: none of them may ever leave the server.
PHI = {
    "PatientName": "Zebulon^Quixotic",
    "PatientBirthDate": "19010203",
    "AccessionNumber": "ACCX9QZ77",
    "PatientAddress": "77 Quokka Lane",
}


def base_dataset(
    *,
    sop_class: str = US_MULTIFRAME,
    patient_id: str = "PID-0001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Dataset:
    """A data set with the identifying attributes a modality writes (fake PHI included), no pixels."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "US" if sop_class != BASIC_TEXT_SR else "SR"
    ds.PatientID = patient_id
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.Manufacturer = "Acme Ultrasound"
    ds.ManufacturerModelName = "EchoMaster 9"
    ds.AcquisitionDateTime = "20240517143005"
    ds.StudyDate = "20240517"
    return ds


def make_dicom(
    frames: np.ndarray,
    *,
    syntax: str = "explicit",
    photometric: str = "RGB",
    frame_time_ms: float | None = 33.3333,
    regions: list[tuple[int, int, int, int]] | None = None,
    multiframe: bool = True,
    preamble: bool = True,
    jpeg_quality: int = 95,
    subsampling: str = "4:2:2",
    burned_in_annotation: str | None = None,
    sop_class: str | None = None,
    **identity: str,
) -> bytes:
    """Encode (n,h,w,3) uint8 RGB frames as a DICOM file in `syntax` with `photometric` pixels; returns its bytes.

    photometric: RGB, YBR_FULL (uncompressed), MONOCHROME2 (first channel), YBR_FULL_422 (jpeg only).
    regions: (x0, y0, x1, y1) 2D entries of the Sequence of Ultrasound Regions.
    jpeg_quality, subsampling: Pillow's quality and chroma subsampling for syntax "jpeg".
    burned_in_annotation: the Burned In Annotation (0028,0301) value ("YES"/"NO"), absent when None.
    sop_class: the SOP Class UID (default: Ultrasound Multi-frame, or Ultrasound Image when not multiframe).
    """
    n, h, w, _ = frames.shape
    ds = base_dataset(sop_class=sop_class or (US_MULTIFRAME if multiframe else US_IMAGE), **identity)
    if burned_in_annotation is not None:
        ds.BurnedInAnnotation = burned_in_annotation
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if multiframe:
        ds.NumberOfFrames = n
        ds.FrameIncrementPointer = 0x00181063  # Frame Time
    if frame_time_ms is not None:
        ds.FrameTime = frame_time_ms
    if regions:
        ds.SequenceOfUltrasoundRegions = Sequence([_region(*r) for r in regions])
    grey = photometric == "MONOCHROME2"
    ds.SamplesPerPixel = 1 if grey else 3
    if not grey:
        ds.PlanarConfiguration = 0
    if syntax == "jpeg":
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([_jpeg(f, jpeg_quality, SUBSAMPLING[subsampling]) for f in frames])
        ds["PixelData"].VR = "OB"
        return _write(ds, preamble)
    pixels = frames[..., 0] if grey else frames
    if photometric == "YBR_FULL":
        pixels = convert_color_space(frames, "RGB", "YBR_FULL")
    ds.PhotometricInterpretation = photometric
    ds.PixelData = np.ascontiguousarray(pixels if multiframe else pixels[0]).tobytes()
    _set_syntax(ds, syntax)
    return _write(ds, preamble)


def make_palette_dicom(indices: np.ndarray, lut: np.ndarray, *, syntax: str = "explicit") -> bytes:
    """(n,h,w) uint8 palette indices with a (256,3) uint16 RGB lookup table, as a PALETTE COLOR DICOM."""
    n, h, w = indices.shape
    ds = base_dataset()
    ds.Rows, ds.Columns, ds.NumberOfFrames = h, w, n
    ds.FrameTime = 33.3333
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for i, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [len(lut), 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut[:, i].astype("<u2").tobytes())
    ds.PixelData = np.ascontiguousarray(indices).tobytes()
    _set_syntax(ds, syntax)
    return _write(ds, True)


def make_sr(**identity: str) -> bytes:
    """A Basic Text SR (a report: no pixels) with the same identifying attributes."""
    ds = base_dataset(sop_class=BASIC_TEXT_SR, **identity)
    ds.ContentSequence = Sequence()
    return _write(ds, True)


def make_dicomdir() -> bytes:
    """A minimal DICOMDIR (media directory) file."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = "ECHOS"
    ds.DirectoryRecordSequence = Sequence()
    return _write(ds, True)


def _set_syntax(ds: Dataset, syntax: str) -> None:
    """Compress native pixel data into `syntax` (deflated: pydicom deflates the data set when it writes it)."""
    if syntax == "deflated":
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    elif syntax != "explicit":
        ds.compress(SYNTAXES[syntax], encoding_plugin="pydicom" if syntax == "rle" else "")


def _region(x0: int, y0: int, x1: int, y1: int) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat = 1
    r.RegionDataType = 1
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = x0, y0, x1, y1
    return r


def _jpeg(frame: np.ndarray, quality: int = 95, subsampling: int = 1) -> bytes:
    buf = io.BytesIO()
    # JFIF YCbCr, 4:2:2 chroma subsampling by default: what ultrasound scanners write as YBR_FULL_422.
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


def _write(ds: Dataset, preamble: bool) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=preamble, implicit_vr=False if not preamble else None, little_endian=True)
    data = buf.getvalue()
    return data
