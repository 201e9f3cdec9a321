"""Deflated Explicit VR Little Endian read as a stream: the header inflated up to a cap, the pixels frame by frame.

pydicom inflates a deflated file whole before it reads a byte of it, so a 1 MB upload of zeros becomes
gigabytes. Here only the data set before the pixel data is inflated (at most HEADER_CAP bytes) and parsed;
the pixel data's size is then known from the header and checked before any of it is inflated, and the
pixels are inflated a frame at a time (at most the declared length; whatever follows is never inflated),
keeping only the frames the sampling asks for.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from echosearch.server.errors import InvalidVideoError

HEADER_CAP = 16 << 20  # inflated bytes of the data set before the pixel data
INPUT_CHUNK = 256 << 10  # deflated bytes fed to zlib at a time
DRAIN_CHUNK = 4 << 20  # inflated bytes read at a time where nothing is kept
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
UNDEFINED_LENGTH = 0xFFFFFFFF


class Inflater:
    """A raw deflate stream inflated on demand, never more than asked for."""

    def __init__(self, deflated: memoryview) -> None:
        self._input = deflated
        self._fed = 0
        self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)

    def read(self, size: int) -> bytes:
        """Up to `size` more inflated bytes; fewer only where the stream ends."""
        out = bytearray()
        while len(out) < size:
            pending = self._zlib.unconsumed_tail
            if not pending and self._fed < len(self._input):
                pending = self._input[self._fed : self._fed + INPUT_CHUNK]
                self._fed += len(pending)
            elif not pending:
                break
            try:
                chunk = self._zlib.decompress(pending, size - len(out))
            except zlib.error as exc:
                raise InvalidVideoError(
                    f"broken pixel data: the deflated data set is not valid deflate ({exc})"
                ) from exc
            out += chunk
            if self._zlib.eof:
                break
        return bytes(out)

    @property
    def complete(self) -> bool:
        """True once the deflate stream's final block was read (a stream cut short never gets there)."""
        return self._zlib.eof


class DeflatedPixels:
    """The native pixel data of a deflated file, still deflated: frames are inflated as they are read."""

    def __init__(self, inflater: Inflater, first: bytes, length: int) -> None:
        self.length = length  # the pixel data element's declared length
        self._inflater = inflater
        self._buffer = first[:length]
        self._consumed = 0

    def frames(self, indices: list[int], frame_bytes: int, frame_count: int) -> Iterator[bytes]:
        """The raw bytes of the frames at `indices` (ascending), in order.

        Reads through to the end of the declared pixel data before handing over the last frame, so a
        stream that stops early is refused like a short native file (InvalidVideoError).
        """
        wanted = set(indices)
        last = max(indices, default=-1)
        for index in range(last + 1):
            raw = self._read(frame_bytes)
            if len(raw) < frame_bytes:
                self._truncated(frame_bytes, frame_count)
            if index == last:
                self._drain(frame_bytes, frame_count)
            if index in wanted:
                yield raw

    def _read(self, size: int) -> bytes:
        size = min(size, self.length - self._consumed)
        if len(self._buffer) < size:
            self._buffer += self._inflater.read(size - len(self._buffer))
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        self._consumed += len(out)
        return out

    def _drain(self, frame_bytes: int, frame_count: int) -> None:
        """Inflate the rest of the declared frames without keeping them; InvalidVideoError if they are short."""
        remaining = frame_bytes * frame_count - self._consumed
        while remaining > 0:
            got = len(self._read(min(remaining, DRAIN_CHUNK)))
            if got == 0:
                self._truncated(frame_bytes, frame_count)
            remaining -= got

    def _truncated(self, frame_bytes: int, frame_count: int) -> None:
        need = frame_bytes * frame_count
        raise InvalidVideoError(
            f"truncated pixel data: {frame_count} frames need {need} bytes, the deflated data hold "
            f"{self._consumed + len(self._buffer)} ({(self._consumed + len(self._buffer)) // frame_bytes} whole frames)"
        )


def read_deflated(deflated: memoryview) -> tuple[Dataset, DeflatedPixels | None]:
    """The data set of a deflated file (after its file meta) up to its pixel data, and the pixels still deflated.

    (data set, None) when the data set has no pixel data. InvalidVideoError when the header does not fit in
    HEADER_CAP inflated bytes, or the pixel data are encapsulated (a deflated file holds native pixels).
    """
    inflater = Inflater(deflated)
    head = b""
    size = 64 << 10
    while True:
        more = inflater.read(size - len(head))
        head += more
        ended = len(head) < size
        ds, at = _parse_header(head, complete=ended)
        if at is not None and len(head) >= at + 12:
            break
        if ended and not inflater.complete:
            raise InvalidVideoError("truncated file: the deflated data set stops before its end")
        if ended:
            return ds, None  # the whole data set, and no pixel data in it
        if size >= HEADER_CAP:
            raise InvalidVideoError(
                f"the DICOM header (the data set before the pixel data) inflates to over {HEADER_CAP >> 20} MiB; "
                "this server reads headers up to that size"
            )
        size = min(size * 4, HEADER_CAP)
    vr, length = head[at + 4 : at + 6], struct.unpack_from("<I", head, at + 8)[0]
    if vr not in (b"OB", b"OW") or length == UNDEFINED_LENGTH:
        raise InvalidVideoError(
            "broken pixel data: a deflated file must hold native (OB/OW) pixel data, this one does not"
        )
    return ds, DeflatedPixels(inflater, head[at + 12 :], length)


def _parse_header(head: bytes, *, complete: bool) -> tuple[Dataset, int | None]:
    """(data set up to the pixel data, offset of the pixel data element or None) of an inflated prefix."""
    fp = DicomBytesIO(head)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    try:
        with warnings.catch_warnings():  # a prefix cut mid-element is expected here: read more and parse again
            warnings.simplefilter("ignore")
            ds = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag == 0x7FE00010)
    except Exception as exc:  # pydicom raises many kinds on a damaged header
        if complete:
            raise InvalidVideoError(f"not a readable DICOM file: the header could not be parsed ({exc})") from exc
        return Dataset(), None
    at = fp.tell()
    return ds, at if head[at : at + 4] == PIXEL_DATA_TAG else None
