"""What a compressed DICOM frame says about itself, read from its own markers before any decoder sees it.

A decoder allocates the image its codestream declares, whatever the DICOM header says; a frame whose own
size disagrees with the header is refused here, at the cost of reading a few bytes. The JPEG family (JPEG
SOFn, JPEG-LS SOF55) and JPEG 2000 / HTJ2K (SIZ) are read; RLE frames decode to the header's size by design.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
# Start-of-frame markers: JPEG SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC); JPEG-LS SOF55 (F7).
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), SOI, EOI})  # markers without a length field
J2K_SOC, J2K_SIZ = b"\xff\x4f", b"\xff\x51"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


@dataclass(frozen=True)
class FrameHeader:
    """The geometry a frame's codestream declares; for JPEG also where its scan starts."""

    columns: int
    rows: int
    components: int
    sampling: tuple[tuple[int, int], ...] = ()  # JPEG: (horizontal, vertical) sampling factor per component
    scan_start: int = 0  # JPEG: offset of the first SOS marker


def read_frame_header(data: bytes) -> FrameHeader:
    """The header of a JPEG-family or JPEG 2000 frame; ValueError when the frame has none we can read."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_header(data)
    if data[:2] == J2K_SOC or data[:12] == JP2_SIGNATURE:
        return _j2k_header(data)
    raise ValueError("the frame starts with neither a JPEG nor a JPEG 2000 marker")


def jpeg_end(data: bytes, scan_start: int) -> int | None:
    """Offset just past the image's end-of-image marker, or None when the data stop before it (truncated).

    Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an FF D9 after the
    first scan can only be an end-of-image marker: the last one ends the image, and whatever follows it is
    padding (0x00, spaces, anything). A frame cut mid-scan has none after its scan start.
    """
    end = data.rfind(b"\xff\xd9")
    return end + 2 if end > scan_start else None


def _jpeg_header(data: bytes) -> FrameHeader:
    pos, header = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"the JPEG marker structure is broken at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in STANDALONE:
            pos += 2
            continue
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if marker in SOF_MARKERS:
            if pos + 10 > len(data):
                break
            rows, columns, count = struct.unpack_from(">HHB", data, pos + 5)
            factors = tuple(
                (data[i] >> 4, data[i] & 0x0F) for i in range(pos + 11, min(pos + 11 + 3 * count, len(data)), 3)
            )
            header = FrameHeader(columns, rows, count, factors)
        elif marker == SOS:
            if header is None:
                raise ValueError("the JPEG data start a scan before declaring a frame (no SOF marker)")
            return FrameHeader(header.columns, header.rows, header.components, header.sampling, pos)
        pos += 2 + length
    raise ValueError("the JPEG data end before the start of the scan (truncated)")


def _j2k_header(data: bytes) -> FrameHeader:
    start = 0
    if data[:12] == JP2_SIGNATURE:  # a JP2 file: the codestream is the contents of the jp2c box
        start = data.find(b"jp2c")
        if start < 0:
            raise ValueError("the JPEG 2000 file has no codestream box")
        start += 4
    if data[start : start + 4] != J2K_SOC + J2K_SIZ or len(data) < start + 44:
        raise ValueError("the JPEG 2000 codestream does not start with its SIZ marker")
    x, y, x0, y0 = struct.unpack_from(">IIII", data, start + 8)
    components = struct.unpack_from(">H", data, start + 40)[0]
    return FrameHeader(x - x0, y - y0, components)
