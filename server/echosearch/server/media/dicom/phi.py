"""The patient-identifier policy: PatientID kept, dropped, or replaced by a keyed hash with a per-store secret;
and which DICOM pixels may be kept as thumbnails under it (thumbnails_withheld).

The secret is created at first start in the data directory (0600) and never leaves the server, so the
same patient maps to the same pseudonym within a store and across restarts, and nobody without the key
can reverse or recompute it (a plain hash of a short medical record number could be brute-forced).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # light at run time: the engine reads the policy on servers without pydicom
    from pydicom.dataset import Dataset

from echosearch.server.media.options import PHI_MODES, MediaOptions

log = logging.getLogger(__name__)

DEFAULT_PHI_MODE = MediaOptions.phi
SECRET_FILE = "phi-secret.key"
PSEUDONYM_PREFIX = "phi-"
_PSEUDONYM_HEX = 32  # 128 bits of the HMAC-SHA256: collisions are not a concern at any archive size


@dataclass(frozen=True)
class PhiPolicy:
    """How a DICOM's PatientID becomes the stored patient_id."""

    mode: str = DEFAULT_PHI_MODE
    secret: bytes = field(default=b"", repr=False)  # travels to the decode workers; never in a log line

    def __post_init__(self) -> None:
        if self.mode not in PHI_MODES:
            raise ValueError(f"--phi must be one of {', '.join(PHI_MODES)}, not {self.mode!r}")
        if self.mode == "hash" and len(self.secret) < 16:
            raise ValueError("--phi hash needs a secret of at least 16 bytes")

    def patient_id(self, raw: str | None) -> str | None:
        """The stored form of a PatientID: a pseudonym (hash), itself (keep) or nothing (drop)."""
        raw = (raw or "").strip()
        if not raw or self.mode == "drop":
            return None
        if self.mode == "keep":
            return raw
        digest = hmac.new(self.secret, raw.encode("utf-8"), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:_PSEUDONYM_HEX]


# Why a DICOM's thumbnails were withheld (PreparedVideo.thumbnails_withheld): the THUMBNAILS_WITHHELD codes.
WITHHELD_BURNED_IN = "burned-in-annotation"  # Burned In Annotation (0028,0301) is YES
WITHHELD_NOT_MASKED = (
    "not-masked"  # no 2D ultrasound region blacked out the rest (none in the file, or --dicom-mask off)
)
THUMBNAILS_WITHHELD = (WITHHELD_BURNED_IN, WITHHELD_NOT_MASKED)

# A decode without a server's policy (bulk embed, a script): PatientID is not read out, and thumbnails follow
# the strict rule of docs/dicom.md ("Thumbnails").
OFFLINE_POLICY = PhiPolicy("drop")


def load_or_create_secret(data_dir: Path) -> bytes:
    """The store's HMAC key from data_dir/phi-secret.key, created (32 random bytes, mode 0600) when absent."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.info("created the PHI pseudonym key %s (mode 0600): back it up with the store", path)
    return key


def _read_secret(path: Path) -> bytes:
    """An existing key file; tightened to 0600 when it was readable by others."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o): set it to 0600", path, mode)
        path.chmod(0o600)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ValueError(f"{path} is not a valid PHI key (64 hex digits); restore it from a backup of the store")
    return key


def policy_for_store(mode: str, data_dir: Path) -> PhiPolicy:
    """The policy a server over data_dir runs with; the key file is only created or read for `hash`."""
    if mode not in PHI_MODES:
        raise ValueError(f"--phi must be one of {', '.join(PHI_MODES)}, not {mode!r}")
    return PhiPolicy(mode, load_or_create_secret(data_dir) if mode == "hash" else b"")


def thumbnails_withheld(ds: Dataset, region: tuple[int, int, int, int] | None, policy: PhiPolicy) -> str | None:
    """Why no thumbnail of this DICOM may be kept under `policy` (a THUMBNAILS_WITHHELD code), or None.

    Under --phi hash|drop a thumbnail is kept only when the file says no identifying text is burned into its
    pixels and the region mask blacked out everything outside the scan (docs/dicom.md, "Thumbnails").
    """
    if policy.mode == "keep":
        return None
    if str(ds.get("BurnedInAnnotation") or "").strip().upper() == "YES":
        return WITHHELD_BURNED_IN
    if region is None:
        return WITHHELD_NOT_MASKED
    return None
