"""The media options of `serve`: decode workers, their time limit, thumbnails, DICOM masking and PatientID.

Light (standard library only): the client CLI reads these defaults to build the `serve` flags; the decode
pool, media/prepare.py and dicom/phi.py read them from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from echosearch.server.options import option

DICOM_MASKS = ("region", "off")  # region: black out outside the largest 2D ultrasound region (docs/dicom.md)
PHI_MODES = ("hash", "keep", "drop")  # what becomes of a DICOM's PatientID (dicom/phi.py)


def default_decode_workers() -> int:
    """min(cores - 1, 8), at least 1."""
    return max(1, min((os.cpu_count() or 2) - 1, 8))


@dataclass(frozen=True)
class MediaOptions:
    """How uploads are decoded, what is kept of their pixels, and what of their DICOM header."""

    TITLE: ClassVar[str] = "media: decode workers, thumbnails, DICOM (docs/dicom.md)"

    decode_workers: int | None = option(
        None,
        flag="--decode-workers",
        type=int,
        minimum=1,
        help="decode worker processes (default min(cores - 1, 8), at least 1)",
    )
    decode_timeout_s: float = option(
        120.0, flag="--decode-timeout", above=0, help="seconds one video may take to decode (default {default})"
    )
    thumbnails: bool = option(
        True,
        flag="--thumbnails",
        help="keep a small JPEG of each embedded frame's model-input crop (default {default}; off keeps no pixels)",
    )
    dicom_mask: str = option(
        "region",
        flag="--dicom-mask",
        choices=DICOM_MASKS,
        help="black out DICOM pixels outside the largest 2D ultrasound region (default {default}), or off",
    )
    phi: str = option(
        "hash",
        flag="--phi",
        choices=PHI_MODES,
        help="DICOM PatientID: hash (keyed with the store's secret), keep as is, or drop (default {default})",
    )
