"""`echosearch dicom-listen`: a DICOM Storage SCP (C-STORE receiver) that ingests each object through gRPC.

A gRPC client of the service like the CLI (pydicom + pynetdicom + grpc; no torch): a modality or PACS
pushes ultrasound objects here, each is spooled to disk as it arrives and forwarded as received to
IngestVideo, and the C-STORE is answered Success only after the service acknowledged the ingest. The
service extracts the metadata and applies its PHI policy, so nothing patient-identifying is read or sent
from here, and logs name SOP Instance UIDs only. Who may hold an association, and for how long, is
dicom_guard.py's; TLS with client certificates is how peers are authenticated (`--allow` only filters
calling AE titles, which any peer can claim).
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import grpc
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, _config, evt
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import Verification, register_uid, uid_to_service_class

from echosearch.client.client import ApiError, Client
from echosearch.client.dicom_guard import AssociationGuard, GuardedAssociationServer, address_of

log = logging.getLogger(__name__)

# Ultrasound Image Storage and Ultrasound Multi-frame Image Storage, current and retired.
US_STORAGE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.3.1",
    "1.2.840.10008.5.1.4.1.1.6.1",
    "1.2.840.10008.5.1.4.1.1.3",
    "1.2.840.10008.5.1.4.1.1.6",
)
# pynetdicom knows the retired classes by UID only, with no storage service behind them: a C-STORE under one
# would abort the whole association. Registered as storage, each object is answered on its own.
RETIRED_US_STORAGE = {
    "1.2.840.10008.5.1.4.1.1.3": "UltrasoundMultiFrameImageStorageRetired",
    "1.2.840.10008.5.1.4.1.1.6": "UltrasoundImageStorageRetired",
}
# What the service decodes (docs/dicom.md lists the same; a test keeps them equal); the sender picks one per
# presentation context.
TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K, RLELossless,
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
class ReceiverTLS:
    """DICOM over TLS: this receiver's certificate, and the CA whose client certificates it accepts."""

    cert: Path
    key: Path
    peer_ca: Path | None = None  # set: only peers with a certificate signed by it can associate

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        if self.peer_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(str(self.peer_ca))
        return context


@dataclass(frozen=True)
class ListenOptions:
    """Where and as whom the receiver listens, whom it lets in, and how long an association may hold a slot."""

    ae_title: str = "ECHOSEARCH"
    host: str = "127.0.0.1"  # loopback unless told otherwise: a receiver on all interfaces is a choice
    port: int = 11112
    allow: tuple[str, ...] = ()  # calling AE titles allowed; empty: any. A filter, not authentication
    max_associations: int = 8
    max_associations_per_peer: int = 4  # per peer IP address
    idle_timeout_s: float = 30.0  # no storage traffic for this long: closed (C-ECHO does not count)
    tls: ReceiverTLS | None = None


class DicomReceiver:
    """The Storage SCP: one pynetdicom AE whose C-STORE handler ingests through a shared gRPC client."""

    def __init__(self, client: Client, options: ListenOptions = ListenOptions()) -> None:
        self.client = client
        self.options = options
        register_retired_storage_classes()
        # Every received data set is written to a temporary file as its PDUs arrive (and deleted once
        # answered), never held in memory: an object's size costs disk, not RAM. A pynetdicom-wide setting.
        _config.STORE_RECV_CHUNKED_DATASET = True
        self.ae = AE(ae_title=options.ae_title)
        # The guard enforces the cap; pynetdicom's own count includes associations still closing.
        self.ae.maximum_associations = 2 * options.max_associations + 2
        # Echo objects are megabytes: let senders use large PDUs (pynetdicom's 16 KiB default means hundreds
        # of Python-level PDUs per object).
        self.ae.maximum_pdu_size = MAX_PDU_BYTES
        self.ae.require_calling_aet = list(options.allow)
        for sop_class in US_STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        self.ae.add_supported_context(Verification)
        self.guard = AssociationGuard(
            max_total=options.max_associations,
            max_per_peer=options.max_associations_per_peer,
            idle_timeout_s=options.idle_timeout_s,
        )
        self._server: GuardedAssociationServer | None = None
        self._lock = threading.Lock()
        self.stored = 0
        self.failed = 0

    def handle_store(self, event: evt.Event) -> int:
        """Ingest one received object; the status the sender gets (Success only after the service's ack)."""
        address = address_of(event)
        self.guard.storing(address, True)
        try:
            return self._ingest(event)
        finally:
            self.guard.storing(address, False)

    def _ingest(self, event: evt.Event) -> int:
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        calling = event.assoc.requestor.ae_title
        try:
            result = self.client.ingest(event.dataset_path, source_name=f"{sop_uid}.dcm")
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
        handlers = [
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_C_ECHO, lambda event: SUCCESS),
            (evt.EVT_CONN_CLOSE, _drop_partial_object),
            *self.guard.handlers(),
        ]
        tls = self.options.tls
        server = self.ae.make_server(
            (self.options.host, self.options.port),
            evt_handlers=handlers,
            ssl_context=tls.context() if tls is not None else None,
            server_class=GuardedAssociationServer,
        )
        server.guard = self.guard
        threading.Thread(target=server.serve_forever, name="dicom-listen-accept", daemon=True).start()
        self.guard.start()
        self._server = server
        host, port = server.server_address[:2]
        log.info(
            "DICOM receiver %s listening on %s:%d%s (calling AE titles allowed: %s; %d associations, %d per peer "
            "address, closed after %.0f s without a C-STORE), ingesting into %s",
            self.options.ae_title,
            host,
            port,
            " with TLS" + (" (client certificates required)" if tls and tls.peer_ca else "") if tls else "",
            ", ".join(self.options.allow) or "any",
            self.options.max_associations,
            self.options.max_associations_per_peer,
            self.options.idle_timeout_s,
            self.client.address,
        )
        return host, port

    def stop(self) -> None:
        """Stop listening and end the open associations."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.guard.stop()
        for assoc in self.ae.active_associations:
            assoc.abort()


def _drop_partial_object(event: evt.Event) -> None:
    """An association that ends mid-transfer leaves the spooled part of its object behind: delete it."""
    message = getattr(getattr(event.assoc, "dimse", None), "message", None)
    spooled = getattr(message, "_data_set_file", None)
    if spooled is not None:
        spooled.close()
        try:
            os.unlink(spooled.name)
        except OSError:
            pass


def register_retired_storage_classes() -> None:
    """Serve the retired ultrasound storage classes as storage (pynetdicom-wide, once)."""
    for uid, keyword in RETIRED_US_STORAGE.items():
        if uid_to_service_class(uid) is not StorageServiceClass:
            register_uid(uid, keyword, StorageServiceClass)


def listen_options(args: argparse.Namespace) -> ListenOptions:
    """The `dicom-listen` flags as ListenOptions; a flag left out keeps ListenOptions' default."""
    given = {f.name: getattr(args, f.name, None) for f in fields(ListenOptions) if f.name not in ("allow", "tls")}
    given["allow"] = parse_allow(args.allow or ())
    if args.dicom_tls_cert or args.dicom_tls_key or args.dicom_tls_peer_ca:
        if not (args.dicom_tls_cert and args.dicom_tls_key):
            raise ValueError("--dicom-tls-cert and --dicom-tls-key go together")
        given["tls"] = ReceiverTLS(args.dicom_tls_cert, args.dicom_tls_key, args.dicom_tls_peer_ca)
    options = replace(ListenOptions(), **{k: v for k, v in given.items() if v is not None})
    if not 1 <= len(options.ae_title) <= 16:
        raise ValueError("--ae-title must be 1 to 16 characters")
    if options.max_associations < 1 or options.max_associations_per_peer < 1 or options.idle_timeout_s <= 0:
        raise ValueError("--max-associations, --max-associations-per-peer and --idle-timeout must be positive")
    return options


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
