"""Docs a newcomer reads match the code (issue 12, items 17 and 18)."""

from __future__ import annotations

import re

import pytest

from echosearch.server.errors import InvalidRequestError
from echosearch.server.rpc import convert
from echosearch.tasks.spec import custom_task
from echosearch.v1 import echosearch_pb2 as pb
from tests.fixtures.servers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*/README.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_stay_inside_the_repository_and_exist(doc):
    assert "shared/DESIGN.md" not in doc.read_text()  # outside the repository: docs/design.md
    for target in LINK.findall(doc.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        path = (doc.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name} links {target}, outside the repository"
        assert path.exists(), f"{doc.name} links {target}, which does not exist"


def test_design_doc_is_in_the_repository_with_the_scoring_math():
    design = (ROOT / "docs" / "design.md").read_text()
    assert "lower median" in design and "0.298" in design and "[0 : min(40, n) : 2]" in design
    assert "docs/design.md" in (ROOT / "README.md").read_text()


def test_api_doc_says_int64_ids_are_strings_in_javascript():
    api = (ROOT / "docs" / "api.md").read_text()
    assert "longs: String" in api and "strings" in api


def test_enum_values_in_error_messages_carry_the_proto_names():
    with pytest.raises(InvalidRequestError, match=r"TASK_KIND_BINARY \(binary\)"):
        convert.task_request_from_proto(pb.CustomTask(prompts=["X"]))
    with pytest.raises(InvalidRequestError, match=r"AGGREGATION_MEAN \(mean\)"):
        convert.aggregation_from_proto(99, "max")
    with pytest.raises(InvalidRequestError, match=r"TASK_KIND_REGRESSION"):
        custom_task(name="t", kind="regression", prompts=["EF <#>"], values=(0, 10, 1), threshold=0.3)
    with pytest.raises(InvalidRequestError, match=r"binary \(TASK_KIND_BINARY\)"):
        custom_task(name="t", kind="nope", prompts=["X"])
