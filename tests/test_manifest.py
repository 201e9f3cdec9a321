"""The CSV manifest shared by `ingest --manifest` and `bulk embed --manifest`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from echosearch.client.manifest import ManifestError, merge, read_manifest
from echosearch.client.types import VideoMetadata


def write(tmp_path, text: str):
    p = tmp_path / "manifest.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_fields_tags_and_relative_paths(tmp_path):
    (tmp_path / "a").mkdir()
    m = read_manifest(
        write(
            tmp_path,
            "path,study_id,patient_id,view,acquisition_time,site\n"
            "a/clip.avi,S1,P1,A4C,2024-05-01T13:45:00Z,north\n"
            "b/clip.avi,S2,,PLAX,,\n"
            "s3://bucket/x.avi,S3,,,,\n",
        )
    )
    assert len(m) == 3
    a = m.metadata_for(tmp_path / "a" / "clip.avi")
    assert a == VideoMetadata("S1", "P1", "A4C", datetime(2024, 5, 1, 13, 45, tzinfo=UTC), {"site": "north"})
    b = m.metadata_for(str(tmp_path / "a" / ".." / "b" / "clip.avi"))
    assert b == VideoMetadata("S2", None, "PLAX", None, {})
    assert m.metadata_for("s3://bucket/x.avi").study_id == "S3"
    assert m.metadata_for(tmp_path / "c.avi") is None
    seen = {str((tmp_path / "a" / "clip.avi").resolve())}
    assert [row for row, _ in m.unused(seen)] == [3, 4]


@pytest.mark.parametrize(
    "text, message",
    [
        ("study_id,view\nS1,A4C\n", "exactly one of the columns 'path' or 'uri'"),
        ("path,uri\na,b\n", "exactly one of the columns"),
        ("path,study_id\nx.avi,S1\n,S2\n", "row 3: the 'path' cell is empty"),
        ("path,acquisition_time\nx.avi,yesterday\n", "row 2: acquisition_time"),
        ("path,study_id\nx.avi,S1\nx.avi,S2\n", "row 3: .* already appears in row 2"),
        ("path,study_id\nx.avi,S1,extra\n", "row 2: more cells than the header"),
    ],
)
def test_problems_name_the_row(tmp_path, text, message):
    with pytest.raises(ManifestError, match=message):
        read_manifest(write(tmp_path, text))


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")


def test_merge_explicit_values_win():
    base = VideoMetadata("S1", "P1", "A4C", None, {"site": "north", "k": "1"})
    out = merge(base, VideoMetadata(view="PLAX", tags={"k": "2"}))
    assert out == VideoMetadata("S1", "P1", "PLAX", None, {"site": "north", "k": "2"})
