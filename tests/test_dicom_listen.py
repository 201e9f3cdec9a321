"""The C-STORE receiver on loopback: a study stored through it, Success only after the service's ack, failure
statuses when the service is down or the object is not an image, C-ECHO, the AE allow-list, parallel associations."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from echosearch.client import Client, VideoFilter
from echosearch.client.dicom_listen import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    SUCCESS,
    DicomReceiver,
    ListenOptions,
    quiet_pynetdicom,
)
from tests.fixtures.dicom_synthetic import (
    BASIC_TEXT_SR,
    PHI,
    US_IMAGE_RETIRED,
    US_MULTIFRAME,
    US_MULTIFRAME_RETIRED,
    make_dicom,
    make_sr,
)
from tests.fixtures.servers import free_port, start_inprocess
from tests.fixtures.synthetic import synthetic_frames

SOP_US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"


def _study(n: int = 5):
    """n ultrasound objects of one study (mixed transfer syntaxes), as pydicom data sets."""
    study = generate_uid()
    series = generate_uid()
    out = []
    for i in range(n):
        frames = synthetic_frames(48, 40, 4, seed=100 + i)
        syntax = ("jpeg", "rle", "explicit")[i % 3]
        photometric = "YBR_FULL_422" if syntax == "jpeg" else "RGB"
        data = make_dicom(frames, syntax=syntax, photometric=photometric, study_uid=study, series_uid=series)
        out.append(dcmread(DicomBytesIO(data)))
    return study, out


def _scu(calling: str = "MODALITY") -> AE:
    ae = AE(ae_title=calling)
    for syntax in (JPEGBaseline8Bit, RLELossless, ExplicitVRLittleEndian):
        ae.add_requested_context(US_MULTIFRAME, syntax)
    ae.add_requested_context(BASIC_TEXT_SR, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    return ae


def _send(port: int, datasets, calling: str = "MODALITY") -> list[int]:
    assoc = _scu(calling).associate("127.0.0.1", port, ae_title="ECHOSEARCH")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    running = start_inprocess(tmp_path_factory.mktemp("listen"))
    client = Client(running.address, retries=0)
    receiver = DicomReceiver(client, ListenOptions(host="127.0.0.1", port=0, allow=("MODALITY", "PACS")))
    _, port = receiver.start()
    yield running, client, port
    receiver.stop()
    client.close()
    running.stop()


def test_a_study_pushed_over_two_associations_is_stored(service, caplog):
    quiet_pynetdicom()
    _, client, port = service
    study, datasets = _study(5)
    statuses: list[int] = []
    with caplog.at_level(logging.INFO, logger="echosearch.client.dicom_listen"):
        senders = [
            threading.Thread(target=lambda part=part: statuses.extend(_send(port, part)))
            for part in (datasets[:3], datasets[3:])
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join(120)
    assert statuses == [SUCCESS] * 5
    videos = list(client.iter_videos(VideoFilter(study_ids=[study])))
    assert len(videos) == 5
    assert {v.metadata.tags["SOPInstanceUID"] for v in videos} == {str(ds.SOPInstanceUID) for ds in datasets}
    assert all(v.metadata.patient_id.startswith("phi-") for v in videos)
    assert str(datasets[0].SOPInstanceUID) in caplog.text  # logs name the object...
    assert not [v for v in PHI.values() if v in caplog.text]  # ...never the patient
    # Sending the same object again is a Success too (already stored): PACS retries are harmless.
    assert _send(port, datasets[:1]) == [SUCCESS]


def test_a_retired_class_object_mid_study_fails_only_itself(service):
    """Old scanners send the retired Ultrasound (Multi-frame) Image Storage classes: each object of a study sent
    in ONE association is answered on its own, and a bad one fails alone."""
    _, client, port = service
    study, series = generate_uid(), generate_uid()

    def obj(seed: int, sop_class: str = US_MULTIFRAME, **kw):
        frames = synthetic_frames(48, 40, 4, seed=seed)
        data = make_dicom(frames, syntax="rle", study_uid=study, series_uid=series, sop_class=sop_class, **kw)
        return dcmread(DicomBytesIO(data))

    bad = dcmread(DicomBytesIO(make_sr(study_uid=study)))  # a report sent under a retired image class
    bad.SOPClassUID = bad.file_meta.MediaStorageSOPClassUID = US_IMAGE_RETIRED
    datasets = [
        obj(200),
        obj(201, US_MULTIFRAME_RETIRED),
        bad,
        obj(202, US_IMAGE_RETIRED, multiframe=False),
        obj(203),
    ]
    ae = _scu()
    for sop_class in (US_MULTIFRAME_RETIRED, US_IMAGE_RETIRED):
        ae.add_requested_context(sop_class, RLELossless)
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="ECHOSEARCH")
    assert assoc.is_established
    statuses = []
    try:
        for ds in datasets:
            try:
                statuses.append(int(assoc.send_c_store(ds).Status))
            except (RuntimeError, AttributeError, ValueError):  # the association is gone
                statuses.append(None)
    finally:
        assoc.release()
    assert statuses == [SUCCESS, SUCCESS, CANNOT_UNDERSTAND, SUCCESS, SUCCESS]
    stored = {v.metadata.tags["SOPInstanceUID"] for v in client.iter_videos(VideoFilter(study_ids=[study]))}
    assert stored == {str(ds.SOPInstanceUID) for i, ds in enumerate(datasets) if i != 2}


def test_echo_allow_list_and_non_image_objects(service):
    _, _, port = service
    assoc = _scu().associate("127.0.0.1", port, ae_title="ECHOSEARCH")
    assert assoc.is_established
    try:
        assert int(assoc.send_c_echo().Status) == SUCCESS
        # An SR (a report) is not an ultrasound image: its presentation context is refused at negotiation,
        # so the sender reports "SOP class not supported" for it instead of a silent success.
        sr_contexts = [c for c in assoc.rejected_contexts if c.abstract_syntax == BASIC_TEXT_SR]
        assert sr_contexts and sr_contexts[0].result == 0x03  # abstract syntax not supported
        with pytest.raises(ValueError, match="presentation context"):
            assoc.send_c_store(dcmread(DicomBytesIO(make_sr())))
        # An SR sent under the ultrasound SOP class (a mislabelled object) is "cannot understand".
        sr = dcmread(DicomBytesIO(make_sr()))
        sr.SOPClassUID = US_MULTIFRAME
        sr.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
        assert int(assoc.send_c_store(sr).Status) == CANNOT_UNDERSTAND
    finally:
        assoc.release()
    stranger = _scu("STRANGER").associate("127.0.0.1", port, ae_title="ECHOSEARCH")
    assert stranger.is_rejected


def test_a_store_while_the_service_is_down_fails_with_out_of_resources(tmp_path):
    dead = Client(f"127.0.0.1:{free_port()}", retries=0, timeout=5)
    receiver = DicomReceiver(dead, ListenOptions(host="127.0.0.1", port=0))
    _, port = receiver.start()
    try:
        ds = dcmread(DicomBytesIO(make_dicom(np.zeros((2, 16, 16, 3), np.uint8))))
        assert _send(port, [ds]) == [OUT_OF_RESOURCES]
    finally:
        receiver.stop()
        dead.close()
    assert receiver.failed == 1 and receiver.stored == 0


def test_cli_dicom_listen_parses_its_options():
    from echosearch.client.cli import build_parser
    from echosearch.client.dicom_listen import parse_allow

    args = build_parser().parse_args(
        ["dicom-listen", "--ae-title", "ECHO1", "--port", "11113", "--server", "h:1", "--allow", "A,B", "--allow", "C"]
    )
    assert (args.ae_title, args.port, args.server) == ("ECHO1", 11113, "h:1")
    assert parse_allow(args.allow) == ("A", "B", "C")
    with pytest.raises(ValueError, match="longer than 16"):
        parse_allow(["X" * 17])


def test_the_receiver_is_a_light_client():
    """dicom-listen runs next to a PACS, not on the GPU box: it must not pull in the server stack."""
    from tests.test_architecture import _modules_after_import

    loaded = _modules_after_import("echosearch.client.dicom_listen")
    assert {"pynetdicom", "pydicom", "grpc"} <= loaded
    assert loaded & {"torch", "faiss", "duckdb", "av", "open_clip", "cv2"} == set()
