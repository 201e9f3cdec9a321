"""Issue 13: every cap has a flag, a default in one place, and a row in docs/api.md's limits table."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from echosearch.client.cli import build_parser
from echosearch.client.serve_command import LIMIT_FLAGS
from echosearch.server.limits import Limits

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _limits_section() -> str:
    text = DOCS.read_text()
    start = text.index("## Limits")
    return text[start : text.index("\n## ", start + 1)]


def test_every_limit_has_a_flag_and_a_documented_row():
    flags = {dest: flag for flag, dest, _, _ in LIMIT_FLAGS}
    section = _limits_section()
    for f in fields(Limits):
        flag = "--max-upload-mb" if f.name == "max_upload_bytes" else flags[f.name]
        assert f"`{flag}`" in section, flag
    assert set(flags) <= {f.name for f in fields(Limits)}


def test_limit_flags_reach_the_limits():
    args = build_parser().parse_args(["serve", "--max-filter-terms", "7", "--upload-idle-timeout", "2.5"])
    given = {dest: getattr(args, f"limit_{dest}") for _, dest, _, _ in LIMIT_FLAGS}
    limits = Limits().with_overrides(**given)
    assert limits.max_filter_terms == 7 and limits.upload_idle_timeout_s == 2.5
    assert limits.max_frames_per_video == Limits().max_frames_per_video


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_filter_terms"):
        Limits(max_filter_terms=0).validate()
    Limits(max_concurrent_uploads=0).validate()  # 0 = derived from --workers


def test_upload_slots_stay_below_the_workers():
    assert Limits().upload_slots(16) == 8
    assert Limits(max_concurrent_uploads=64).upload_slots(16) == 15
    assert Limits().upload_slots(1) == 1
