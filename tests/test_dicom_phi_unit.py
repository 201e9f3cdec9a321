"""The PHI policy and the DICOM header allow-list, without a server."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

import numpy as np
import pytest

from echosearch.server.media.dicom.dataset import read_dataset
from echosearch.server.media.dicom.header import _parse_dt, header_metadata, merge_metadata
from echosearch.server.media.dicom.phi import SECRET_FILE, PhiPolicy, load_or_create_secret, policy_for_store
from echosearch.server.records import VideoMetadata
from tests.fixtures.dicom_synthetic import PHI, make_dicom

DATA = read_dataset(make_dicom(np.zeros((3, 16, 16, 3), np.uint8), patient_id="MRN-42", study_uid="1.2.3.4"))


def test_secret_is_created_once_with_0600_and_reused(tmp_path):
    key = load_or_create_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert load_or_create_secret(tmp_path) == key
    path.chmod(0o644)
    assert load_or_create_secret(tmp_path) == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("not hex")
    with pytest.raises(ValueError, match="not a valid PHI key"):
        load_or_create_secret(tmp_path)


def test_hash_is_stable_per_store_and_differs_between_stores(tmp_path):
    a1 = policy_for_store("hash", tmp_path / "a").patient_id("MRN-42")
    a2 = policy_for_store("hash", tmp_path / "a").patient_id("MRN-42")  # a restart reads the same key
    b = policy_for_store("hash", tmp_path / "b").patient_id("MRN-42")
    assert a1 == a2 != b and a1.startswith("phi-") and "MRN-42" not in a1
    assert policy_for_store("hash", tmp_path / "a").patient_id("MRN-43") != a1
    assert policy_for_store("keep", tmp_path / "c").patient_id("MRN-42") == "MRN-42"
    assert policy_for_store("drop", tmp_path / "d").patient_id("MRN-42") is None
    assert not (tmp_path / "c" / SECRET_FILE).exists()
    with pytest.raises(ValueError, match="--phi must be one of"):
        PhiPolicy("scramble")


def test_header_metadata_is_an_allow_list(tmp_path):
    meta = header_metadata(DATA, policy_for_store("hash", tmp_path))
    assert meta.study_id == "1.2.3.4"
    assert meta.acquisition_time == datetime(2024, 5, 17, 14, 30, 5, tzinfo=UTC)
    assert set(meta.tags) == {
        "SeriesInstanceUID", "SOPInstanceUID", "Manufacturer", "ManufacturerModelName", "NumberOfFrames", "Rows",
        "Columns",
    }  # fmt: skip
    assert meta.tags["NumberOfFrames"] == "3" and meta.tags["Manufacturer"] == "Acme Ultrasound"
    text = repr(meta)
    for value in (*PHI.values(), "MRN-42", "Zebulon"):
        assert value not in text
    assert header_metadata(DATA, PhiPolicy("drop")).patient_id is None


def test_explicit_metadata_overrides_the_file():
    from_file = VideoMetadata(study_id="1.2.3", patient_id="phi-x", tags={"Manufacturer": "Acme", "Rows": "16"})
    explicit = VideoMetadata(study_id="S-1", view="A4C", tags={"Manufacturer": "Other"})
    merged = merge_metadata(from_file, explicit)
    assert (merged.study_id, merged.patient_id, merged.view) == ("S-1", "phi-x", "A4C")
    assert merged.tags == {"Manufacturer": "Other", "Rows": "16"}


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("20240517143005", "", datetime(2024, 5, 17, 14, 30, 5, tzinfo=UTC)),
        ("20240517143005.25+0200", "", datetime(2024, 5, 17, 12, 30, 5, 250000, tzinfo=UTC)),
        ("20240517", "-0500", datetime(2024, 5, 17, 5, 0, 0, tzinfo=UTC)),
        ("2024", "", None),
        ("garbage", "", None),
    ],
)
def test_dicom_datetimes(text, offset, expected):
    assert _parse_dt(text, offset) == expected


def test_the_policy_header_and_dispatcher_import_no_pydicom():
    """A server without the `dicom` extra reads the PHI policy, merges header metadata and routes uploads."""
    from tests.test_architecture import _modules_after_import

    for module in ("media.dicom.phi", "media.dicom.header", "media.prepare"):
        loaded = _modules_after_import(f"echosearch.server.{module}")
        assert "pydicom" not in loaded and "pynetdicom" not in loaded, module
