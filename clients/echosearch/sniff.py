"""What kind of file is this: the one test for "is it DICOM", shared by the CLI (folder scans) and the server.

Light on purpose (stdlib only, no pydicom), beside `echosearch.errors`: the CLI uses it to pick files out of a
folder, the server's media dispatcher (media/prepare.py) to route an upload to the DICOM or the video decoder.
"""

from __future__ import annotations

import os
import struct

HEAD_BYTES = 132  # preamble (128) + "DICM"
# Value representations of the DICOM standard: an explicit-VR element has one of these at bytes 4..6.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)


def looks_like_dicom(head: bytes) -> bool:
    """True for a DICOM Part 10 file (DICM at offset 128) or a bare data set starting with a valid element.

    Bare data sets (no preamble) are what some archives and old modalities write; they start with a
    file-meta (0002,xxxx) or identifying (0008,xxxx) element in little endian.
    """
    if len(head) >= HEAD_BYTES and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group, element = struct.unpack_from("<HH", head)
    if group not in (0x0002, 0x0008) or element > 0x0100:
        return False
    if head[4:6] in _VRS:  # explicit VR
        return True
    length = struct.unpack_from("<I", head, 4)[0]  # implicit VR: a plausible 4-byte length
    return 0 < length < 1 << 16


def is_dicom(source: bytes | bytearray | memoryview | str | os.PathLike[str]) -> bool:
    """looks_like_dicom on the first bytes of `source` (bytes, or a file); False when the file cannot be read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return looks_like_dicom(bytes(source[:HEAD_BYTES]))
    try:
        with open(source, "rb") as f:
            return looks_like_dicom(f.read(HEAD_BYTES))
    except OSError:
        return False
