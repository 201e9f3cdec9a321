"""docs/writing-a-plugin.md's "Testing a plugin" snippet, run as documented (issue 19 item 7).

It must catch what the server would skip: a prompt over the model's 77-token context passes a bare
`load_registry()`, and is then skipped by the server, whose registry counts tokens with the model's tokenizer.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from echosearch.server.tasks.registry import ENTRY_POINT_GROUP
from tests.fixtures.servers import ROOT

pytest.importorskip("open_clip", reason="the prompt check counts tokens with open_clip's tokenizer")

EXAMPLE = ROOT / "examples" / "echosearch-plugin-example"
LONG_PROMPT = "THE LEFT VENTRICLE IS SEVERELY DILATED WITH GLOBAL HYPOKINESIS. " * 25


def _snippet() -> str:
    """The python block under "### Testing a plugin"."""
    doc = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    section = doc.split("### Testing a plugin", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _distribution(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """What an installed distribution looks like to importlib.metadata: a dist-info with entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")


def _run(site: Path) -> subprocess.CompletedProcess:
    env_path = f"{site}:{EXAMPLE}"
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {env_path.split(':')!r}\n" + _snippet()],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow  # a child process, Ray or many uploads: seconds of the quick loop
def test_the_documented_plugin_test_catches_a_prompt_the_server_would_skip(tmp_path) -> None:
    declared = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    site = tmp_path / "site"
    _distribution(site, "echosearch-plugin-example", declared)
    done = _run(site)
    assert done.returncode == 0, done.stderr  # the example plugin passes the documented test

    (site / "wordy_plugin.py").write_text(
        f"from echosearch.tasks import Task\ntasks = [Task(name='wordy', kind='binary', prompts=({LONG_PROMPT!r},))]\n"
    )
    _distribution(site, "wordy-plugin", {"wordy": "wordy_plugin:tasks"})
    done = _run(site)
    assert done.returncode != 0 and "AssertionError" in done.stderr
    assert "task 'wordy'" in done.stderr and "over the model's context of 77" in done.stderr


def test_the_plugin_token_count_is_the_servers(tmp_path) -> None:
    from echosearch.server.model import load_model
    from echosearch.tasks import CONTEXT_LENGTH, clip_token_counter

    count = clip_token_counter()
    model = load_model("random:tiny", device="cpu")
    texts = ["", "A PACEMAKER LEAD IS SEEN. ", "LV EJECTION FRACTION IS 35%. ", LONG_PROMPT, "naïve café — 1.5 cm²"]
    assert [count(t) for t in texts] == [model.count_tokens(t) for t in texts]
    assert CONTEXT_LENGTH == model.context_length and count(LONG_PROMPT) > CONTEXT_LENGTH
