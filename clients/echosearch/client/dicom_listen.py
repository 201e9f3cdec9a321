"""`echosearch dicom-listen`: a DICOM Storage SCP (C-STORE receiver) that ingests each object through gRPC.

A gRPC client of the service like the CLI (pydicom + pynetdicom + grpc; no torch): a modality or PACS
pushes ultrasound objects here, each is forwarded as-is (the received bytes) to IngestVideo, and the
C-STORE is answered Success only after the service acknowledged the ingest. The service extracts the
metadata and applies its PHI policy, so nothing patient-identifying is read or sent from here, and logs
name SOP Instance UIDs only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from echosearch.client.client import ApiError, Client

log = logging.getLogger(__name__)

# Ultrasound Image Storage and Ultrasound Multi-frame Image Storage, current and retired.
US_STORAGE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.3.1",
    "1.2.840.10008.5.1.4.1.1.6.1",
    "1.2.840.10008.5.1.4.1.1.3",
    "1.2.840.10008.5.1.4.1.1.6",
)
# What the service decodes; the sender picks one per presentation context.
TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless,
)  # fmt: skip

MAX_PDU_BYTES = 1 << 20
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # transient: the sender should retry later
# How long a C-STORE waits for a free upload slot of a busy service before answering 0xA700: well inside
# the sender's DIMSE timeout (commonly 30-60 s), so the sender hears "retry later", not silence.
SLOT_WAIT_S = 20.0
CANNOT_UNDERSTAND = 0xC000  # permanent: the object itself is the problem
# Service answers after which a retry can succeed (the service is down, busy or slow).
TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


@dataclass(frozen=True)
class ListenOptions:
    """Where and as whom the receiver listens, and whom it lets in."""

    ae_title: str = "ECHOSEARCH"
    host: str = "0.0.0.0"
    port: int = 11112
    allow: tuple[str, ...] = ()  # calling AE titles allowed; empty: any
    max_associations: int = 8


class DicomReceiver:
    """The Storage SCP: one pynetdicom AE whose C-STORE handler ingests through a shared gRPC client."""

    def __init__(self, client: Client, options: ListenOptions = ListenOptions()) -> None:
        self.client = client
        self.options = options
        self.ae = AE(ae_title=options.ae_title)
        self.ae.maximum_associations = options.max_associations
        # Echo objects are megabytes: let senders use large PDUs (pynetdicom's 16 KiB default means hundreds
        # of Python-level PDUs per object).
        self.ae.maximum_pdu_size = MAX_PDU_BYTES
        self.ae.require_calling_aet = list(options.allow)
        for sop_class in US_STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        self.ae.add_supported_context(Verification)
        self._server = None
        self._lock = threading.Lock()
        self.stored = 0
        self.failed = 0

    def handle_store(self, event: evt.Event) -> int:
        """Ingest one received object; the status the sender gets (Success only after the service's ack)."""
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        calling = event.assoc.requestor.ae_title
        try:
            data = event.encoded_dataset()
        except Exception as exc:  # the P-DATA could not be framed as a file: nothing the service can read
            log.warning("C-STORE %s from %s: cannot encode the received data set (%s)", sop_uid, calling, exc)
            return self._count(CANNOT_UNDERSTAND)
        try:
            result = self.client.ingest(data, source_name=f"{sop_uid}.dcm")
        except ApiError as exc:
            status = OUT_OF_RESOURCES if exc.code in TRANSIENT else CANNOT_UNDERSTAND
            log.warning(
                "C-STORE %s from %s: %s (status 0x%04X): %s", sop_uid, calling, exc.code.name, status, exc.message
            )
            return self._count(status)
        except Exception as exc:  # anything else between here and the service: the sender should retry
            log.warning("C-STORE %s from %s: ingest failed (%s), status 0xA700", sop_uid, calling, exc)
            return self._count(OUT_OF_RESOURCES)
        state = "already stored as" if result.already_stored else "stored as"
        log.info("C-STORE %s from %s: %s video %d", sop_uid, calling, state, result.video.video_id)
        return self._count(SUCCESS)

    def _count(self, status: int) -> int:
        with self._lock:
            if status == SUCCESS:
                self.stored += 1
            else:
                self.failed += 1
        return status

    def start(self) -> tuple[str, int]:
        """Listen in background threads (one per association); returns the bound (host, port)."""
        handlers = [(evt.EVT_C_STORE, self.handle_store), (evt.EVT_C_ECHO, lambda event: SUCCESS)]
        self._server = self.ae.start_server((self.options.host, self.options.port), block=False, evt_handlers=handlers)
        host, port = self._server.server_address[:2]
        log.info(
            "DICOM receiver %s listening on %s:%d (calling AE titles allowed: %s), ingesting into %s",
            self.options.ae_title,
            host,
            port,
            ", ".join(self.options.allow) or "any",
            self.client.address,
        )
        return host, port

    def stop(self) -> None:
        """Stop listening and end the open associations."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None


def quiet_pynetdicom() -> None:
    """pynetdicom's debug logs can print whole data sets (patient names included): keep them off."""
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def parse_allow(values: Iterable[str]) -> tuple[str, ...]:
    """`--allow A,B --allow C` -> ("A", "B", "C"); AE titles are at most 16 characters."""
    titles = tuple(t.strip() for v in values for t in v.split(",") if t.strip())
    for title in titles:
        if len(title) > 16:
            raise ValueError(f"--allow: AE title {title!r} is longer than 16 characters")
    return titles
