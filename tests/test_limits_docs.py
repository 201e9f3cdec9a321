"""Issue 13: every cap has a flag, a default in one place, and a row in docs/api.md's limits table."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from echosearch.client.cli import build_parser
from echosearch.server.config import config_from_args
from echosearch.server.limits import Limits
from echosearch.server.options import flags_of

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _limits_section() -> str:
    text = DOCS.read_text()
    start = text.index("## Limits")
    return text[start : text.index("\n## ", start + 1)]


def test_every_limit_has_a_flag_and_a_documented_row():
    flags = {spec.name: spec.flag for spec in flags_of(Limits)}
    assert set(flags) == {f.name for f in fields(Limits)}  # every cap is a flag
    section = _limits_section()
    for flag in flags.values():
        assert f"`{flag}`" in section, flag


def test_limit_flags_reach_the_limits():
    args = build_parser().parse_args(
        ["serve", "--max-filter-terms", "7", "--upload-idle-timeout", "2.5", "--max-upload-mb", "3"]
    )
    limits = config_from_args(args).limits
    assert limits.max_filter_terms == 7 and limits.upload_idle_timeout_s == 2.5
    assert limits.max_upload_bytes == 3 << 20  # the flag counts MiB, the limit bytes
    assert limits.max_frames_per_video == Limits().max_frames_per_video


def test_the_limit_flags_help_shows_the_default_limits_py_holds(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"values in one filter (default {Limits().max_filter_terms})" in text
    assert f"largest accepted upload in MiB (default {Limits().max_upload_bytes >> 20})" in text


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="--max-filter-terms .max_filter_terms. must be >= 1, not 0"):
        Limits(max_filter_terms=0).validate()
    with pytest.raises(ValueError, match="--upload-idle-timeout"):
        Limits(upload_idle_timeout_s=0).validate()
    Limits(max_concurrent_uploads=0).validate()  # 0 = derived from --workers


def test_upload_slots_stay_below_the_workers():
    assert Limits().upload_slots(16) == 8
    assert Limits(max_concurrent_uploads=64).upload_slots(16) == 15
    assert Limits().upload_slots(1) == 1
