"""DICOM through the real service: metadata and the PHI policy end to end (catalog bytes, Parquet export, server
log, GetVideo), --phi modes across restarts, explicit metadata over the file's, errors, and folder ingest."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from echosearch.client import ApiError, Client, VideoMetadata
from echosearch.client.cli import main as cli_main
from echosearch.server.media.dicom.phi import SECRET_FILE
from tests.fixtures.dicom_synthetic import PHI, make_dicom, make_dicomdir, make_sr
from tests.fixtures.servers import ServerProcess, start_inprocess
from tests.fixtures.synthetic import make_video, synthetic_frames

FRAMES = synthetic_frames(64, 48, 6, seed=5)
RAW_PATIENT_ID = "PID-77Q31"
PLANTED = [*PHI.values(), "Zebulon", "Quixotic", RAW_PATIENT_ID]


def _dicom(seed: int = 5, **kw) -> bytes:
    return make_dicom(synthetic_frames(64, 48, 6, seed=seed), patient_id=RAW_PATIENT_ID, **kw)


def _grep(blob: bytes, needles: list[str]) -> list[str]:
    return [n for n in needles if n.encode() in blob]


def _tree_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != SECRET_FILE)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """An in-process server with the defaults (--phi hash, --dicom-mask region)."""
    running = start_inprocess(tmp_path_factory.mktemp("service"))
    with Client(running.address) as client:
        yield running, client
    running.stop()


def test_phi_never_leaves_the_server(tmp_path):
    """`echosearch serve` in a child process (DEBUG log as JSON lines, so every log line can be grepped; and its
    Prometheus page)."""
    data = tmp_path / "store"
    server = ServerProcess(data, extra=["--log-level", "DEBUG", "--log-format", "json", "--metrics-port", "0"])
    try:
        with Client(server.wait_ready()) as client:
            _phi_checks(server, client, data, tmp_path)
    finally:
        server.terminate()


def _phi_checks(server: ServerProcess, client: Client, data: Path, tmp_path: Path) -> None:
    result = client.ingest(_dicom(syntax="jpeg"), source_name="echo-1.dcm")
    video = client.get_video(result.video.video_id)
    meta = video.metadata
    assert meta.patient_id.startswith("phi-") and meta.study_id and meta.tags["Manufacturer"] == "Acme Ultrasound"
    assert meta.acquisition_time is not None and meta.tags["NumberOfFrames"] == "6"
    # GetVideo as it travels on the wire.
    from echosearch.v1 import echosearch_pb2 as pb
    from echosearch.v1 import echosearch_pb2_grpc as pb_grpc

    stub = pb_grpc.EchoSearchServiceStub(grpc.insecure_channel(server.address))
    wire = stub.GetVideo(pb.GetVideoRequest(video_id=result.video.video_id)).SerializeToString()
    assert b"Acme Ultrasound" in wire and _grep(wire, PLANTED) == []
    parquet = tmp_path / "export.parquet"
    client.export(parquet)
    exported = parquet.read_bytes()
    assert meta.study_id.encode() in exported and _grep(exported, PLANTED) == []
    metrics_url = re.search(r"Prometheus metrics at (http://\S+/metrics)", server.log).group(1)
    page = urllib.request.urlopen(metrics_url, timeout=10).read()
    assert b"echosearch_ingest_videos_total 1.0" in page and _grep(page, [*PLANTED, meta.patient_id, "echo-1"]) == []
    server.terminate()  # the catalog checkpointed to disk, the log complete
    lines = [json.loads(line) for line in server.lines if line.strip()]  # every line is one JSON object
    ingest = [x for x in lines if x.get("rpc_method") == "IngestVideo" and x["logger"] == "echosearch.rpc"]
    assert len(ingest) == 1 and ingest[0]["rpc_code"] == "OK" and len(ingest[0]["request_id"]) == 16
    assert "echo-1.dcm" in server.log and _grep(server.log.encode(), PLANTED) == []
    catalog = _tree_bytes(data)
    assert meta.patient_id.encode() in catalog  # the check can see stored strings...
    assert _grep(catalog, PLANTED) == []  # ...and none of the planted identifiers is one


def test_hash_is_stable_across_restarts_and_drop_keeps_nothing(tmp_path):
    data = tmp_path / "store"
    pseudonyms = []
    for seed in (1, 2):  # two different echoes of the same patient, one per server lifetime
        running = start_inprocess(data)
        try:
            with Client(running.address) as client:
                pseudonyms.append(client.ingest(_dicom(seed=seed)).video.metadata.patient_id)
        finally:
            running.stop()
    assert pseudonyms[0] == pseudonyms[1] and pseudonyms[0].startswith("phi-")
    assert (data / SECRET_FILE).stat().st_mode & 0o777 == 0o600

    dropped = start_inprocess(tmp_path / "drop", phi="drop")
    try:
        with Client(dropped.address) as client:
            video = client.ingest(_dicom(seed=3)).video
            assert video.metadata.patient_id in (None, "")
            assert video.metadata.study_id  # the rest of the header still arrives
    finally:
        dropped.stop()
    assert _grep(_tree_bytes(tmp_path / "drop"), PLANTED + [pseudonyms[0]]) == []
    assert not (tmp_path / "drop" / SECRET_FILE).exists()


def test_explicit_metadata_overrides_the_file_and_errors_name_the_file(service):
    _, client = service
    video = client.ingest(
        _dicom(seed=9, syntax="rle"),
        metadata=VideoMetadata(study_id="S-OVERRIDE", patient_id="P-EXPLICIT", view="A4C", tags={"Rows": "x"}),
    ).video
    m = video.metadata
    assert (m.study_id, m.patient_id, m.view, m.tags["Rows"]) == ("S-OVERRIDE", "P-EXPLICIT", "A4C", "x")
    assert m.tags["Manufacturer"] == "Acme Ultrasound"
    for data, name, reason in [
        (make_sr(), "report.dcm", "not an image"),
        (make_dicomdir(), "DICOMDIR", "DICOMDIR"),
        (_dicom(seed=4)[:-4000], "cut.dcm", "truncated pixel data"),
        (b"", "zero.dcm", "no bytes received"),
    ]:
        with pytest.raises(ApiError) as err:
            client.ingest(data, source_name=name)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert name in err.value.message and reason in err.value.message


def test_folder_ingest_finds_dicom_without_extension_and_lists_what_it_skips(service, tmp_path, capsys):
    server, _ = service
    folder = tmp_path / "study"
    (folder / "series1").mkdir(parents=True)
    (folder / "series1" / "IM0001").write_bytes(_dicom(seed=21))  # no extension
    (folder / "series1" / "IM0002.dcm").write_bytes(_dicom(seed=22, syntax="j2k"))
    (folder / "clip.avi").write_bytes(make_video(64, 48, 6))
    (folder / "notes.txt").write_text("not an echo")
    (folder / "empty").write_bytes(b"")
    (folder / "DICOMDIR").write_bytes(make_dicomdir())
    rc = cli_main(["--server", server.address, "--json", "ingest", str(folder), "--no-progress"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {Path(r["path"]).name: r for r in rows}
    assert rc == 1  # the DICOMDIR is a file the user should hear about
    assert {by_name[n]["status"] for n in ("IM0001", "IM0002.dcm", "clip.avi")} <= {"stored", "already stored"}
    assert by_name["notes.txt"]["status"] == "skipped" and "no DICOM header" in by_name["notes.txt"]["error"]
    assert by_name["empty"]["status"] == "skipped" and "0 bytes" in by_name["empty"]["error"]
    assert by_name["DICOMDIR"]["status"] == "failed" and re.search(
        "DICOMDIR.*not an image", by_name["DICOMDIR"]["error"]
    )


def test_masking_is_a_server_option(tmp_path):
    frames = np.full((4, 48, 64, 3), 180, dtype=np.uint8)
    data = make_dicom(frames, regions=[(8, 4, 55, 40)])
    embeddings = []
    for mask in ("region", "off"):
        running = start_inprocess(tmp_path / mask, dicom_mask=mask)
        try:
            with Client(running.address) as client:
                vid = client.ingest(data).video.video_id
                embeddings.append(np.asarray([f.embedding for f in client.get_frames(vid)]))
        finally:
            running.stop()
    assert not np.allclose(embeddings[0], embeddings[1], atol=1e-4)


def test_the_server_process_never_parses_a_dicom(service, monkeypatch):
    """The decode worker reads the header with the pixels: a parse in the server process would hold a deflated
    file inflated there (issue 21, R2). pydicom's parser refuses to run in this process for this test."""
    import pydicom.filereader

    def refuse(*args, **kwargs):
        raise AssertionError("pydicom parsed a file in the server process")

    monkeypatch.setattr(pydicom.filereader, "read_partial", refuse)
    monkeypatch.setattr(pydicom.filereader, "read_dataset", refuse)
    _, client = service
    video = client.ingest(_dicom(seed=41, syntax="deflated"), source_name="deflated.dcm").video
    assert video.total_frames == 6 and video.metadata.tags["NumberOfFrames"] == "6"
    assert video.metadata.patient_id.startswith("phi-")


def test_a_large_dicom_spooled_to_disk_keeps_its_metadata(service):
    """Uploads past the in-memory threshold reach the ingest service as a file: DICOM is still recognised and read."""
    _, client = service
    frames = synthetic_frames(640, 480, 10, seed=31)  # 9.2 MB uncompressed
    video = client.ingest(make_dicom(frames, patient_id=RAW_PATIENT_ID), source_name="big.dcm").video
    assert video.total_frames == 10 and video.metadata.tags["Columns"] == "640"
    assert video.metadata.patient_id.startswith("phi-")
