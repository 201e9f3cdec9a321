"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
EXAMPLE_VIDEO = SHARED_DATA / "example_video.avi"

sys.path.insert(0, str(TESTS))  # lets tests import `synthetic`


@pytest.fixture(scope="session")
def example_video() -> Path:
    """The real apical-4-chamber echo from ../shared/data; skipped where it is absent."""
    if not EXAMPLE_VIDEO.exists():
        pytest.skip("../shared/data/example_video.avi is not present")
    return EXAMPLE_VIDEO
