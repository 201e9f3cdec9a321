"""Entry-point discovery with real entry points: each test writes a ``*.dist-info`` (METADATA +
entry_points.txt) and the plugin's module into a temp folder on sys.path, which is exactly
what an installed distribution looks like to importlib.metadata."""

from __future__ import annotations

import logging
import sys
import tomllib
import uuid
from pathlib import Path

import numpy as np
import pytest

from echosearch.server.errors import NotFoundError
from echosearch.server.tasks.registry import ENTRY_POINT_GROUP, TaskRegistry, load_registry, tasks_from_object
from echosearch.server.tasks.scoring_math import score_task
from echosearch.tasks.spec import Task, TaskKind

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "echosearch-plugin-example"
VALID = 'Task(name="{name}", kind="binary", prompts=("A THING IS SEEN. ",))'


def module_name() -> str:
    return f"plugin_{uuid.uuid4().hex[:10]}"  # fresh per test: sys.modules never serves a stale one


def test_builtins_load_without_problems() -> None:
    registry = load_registry()
    assert len(registry) == 31 and registry.problems == []
    assert "pacemaker" in registry


def test_example_package_registers_through_its_entry_point_and_scores(install) -> None:
    # Use the example's own pyproject declaration, so the test breaks if the example does.
    declared = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    install("echosearch-plugin-example", declared, {})
    sys.path.insert(0, str(EXAMPLE))
    try:
        sys.modules.pop("echosearch_plugin_example", None)
        registry = load_registry()
    finally:
        sys.path.remove(str(EXAMPLE))
        sys.modules.pop("echosearch_plugin_example", None)
    assert registry.problems == []
    task = registry.get("example_ef_coarse")
    assert task.source == "echosearch-plugin-example:example"
    assert len(task.candidate_texts()) == 15
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((6, 512)).astype(np.float32)
    text_emb = rng.standard_normal((15, 512)).astype(np.float32)
    scores = score_task(task, frames, np.array([0, 2, 6]), text_emb)
    assert ((scores.value >= 10) & (scores.value <= 80)).all()


@pytest.mark.parametrize(
    "declaration",
    [
        f"thing = {VALID.format(name='third_party')}",  # a Task
        f"thing = [{VALID.format(name='third_party')}]",  # a list of Tasks
        f"def thing():\n    return ({VALID.format(name='third_party')},)",  # a callable returning them
    ],
)
def test_plugin_forms(install, declaration: str) -> None:
    mod = module_name()
    install("third-party", {"tp": f"{mod}:thing"}, {mod: f"from echosearch.tasks.spec import Task\n{declaration}\n"})
    registry = load_registry()
    assert registry.get("third_party").source == "third-party:tp"
    assert len(registry) == 32 and registry.problems == []


def test_plugin_that_fails_to_import_is_skipped_with_a_warning(install, caplog) -> None:
    mod = module_name()
    install("broken-plugin", {"broken": f"{mod}:tasks"}, {mod: "import not_a_real_module_xyz\n"})
    with caplog.at_level(logging.WARNING, logger="echosearch.server.tasks.registry"):
        registry = load_registry()
    assert len(registry) == 31  # the built-ins still load
    assert any("'broken'" in r.message and "failed to load" in r.message for r in caplog.records)
    assert len(registry.problems) == 1


def test_plugin_whose_callable_raises_or_returns_junk_is_skipped(install, caplog) -> None:
    raising, junk = module_name(), module_name()
    install("raiser", {"raiser": f"{raising}:tasks"}, {raising: "def tasks():\n    raise RuntimeError('boom')\n"})
    install("junk", {"junk": f"{junk}:tasks"}, {junk: "tasks = 42\n"})
    with caplog.at_level(logging.WARNING):
        registry = load_registry()
    assert len(registry) == 31
    text = "\n".join(registry.problems)
    assert "boom" in text and "'junk'" in text and "int" in text


def test_invalid_task_is_skipped_but_its_siblings_load(install, caplog) -> None:
    mod = module_name()
    source = f"""
        from echosearch.tasks.spec import Task
        tasks = [
            Task(name="no_placeholder", kind="regression", prompts=("EF IS 50%",), values=(0, 100)),
            Task(name="empty", kind="binary", prompts=()),
            "not a task",
            {VALID.format(name="good_one")},
        ]
    """
    install("mixed", {"mixed": f"{mod}:tasks"}, {mod: source})
    with caplog.at_level(logging.WARNING):
        registry = load_registry()
    assert "good_one" in registry and "no_placeholder" not in registry and "empty" not in registry
    assert len(registry.problems) == 3
    assert any("no '<#>'" in p for p in registry.problems)
    assert all("'mixed'" in r.message for r in caplog.records if r.levelno == logging.WARNING)


def test_name_clash_builtin_wins_then_distribution_order(install, caplog) -> None:
    a, b = module_name(), module_name()
    header = "from echosearch.tasks.spec import Task\n"
    pacemaker, shared = VALID.format(name="pacemaker"), VALID.format(name="shared")
    install("zzz-plugin", {"z": f"{a}:tasks"}, {a: f"{header}tasks = [{pacemaker}, {shared}]\n"})
    install("aaa-plugin", {"a": f"{b}:tasks"}, {b: f"{header}tasks = [{shared}]\n"})
    with caplog.at_level(logging.WARNING):
        registry = load_registry()
    pacemaker = registry.get("pacemaker")
    assert pacemaker.source == "echosearch:echoclip" and pacemaker.threshold == 0.298
    assert registry.get("shared").source == "aaa-plugin:a"  # sorted by distribution name
    assert len(registry.problems) == 2
    assert any("'pacemaker'" in p and "keeping echosearch:echoclip" in p for p in registry.problems)
    assert any("'shared'" in p and "keeping aaa-plugin:a" in p for p in registry.problems)


def test_tasks_from_object_rejects_strings() -> None:
    with pytest.raises(TypeError):
        tasks_from_object("pacemaker")


def test_registry_list_sorted_and_rejects_duplicates() -> None:
    t = [Task(name=n, kind=TaskKind.BINARY, prompts=("x",)) for n in ("b", "a", "c")]
    assert [x.name for x in TaskRegistry(t).list()] == ["a", "b", "c"]
    with pytest.raises(ValueError):
        TaskRegistry([t[0], t[0]])


def test_plugin_prompt_over_the_model_context_is_skipped_like_a_custom_task(install, caplog) -> None:
    """Issue 12 item 15: the tokenizer would cut it silently, so the task is skipped with the reason."""
    mod = module_name()
    long_prompt = "A VERY LONG PROMPT " * 30
    source = f"""
        from echosearch.tasks.spec import Task
        tasks = [Task(name="wordy", kind="binary", prompts=({long_prompt!r},)), {VALID.format(name="short")}]
    """
    install("acme-tasks", {"acme": f"{mod}:tasks"}, {mod: source})
    with caplog.at_level(logging.INFO, logger="echosearch.server.tasks.registry"):
        registry = load_registry(count_tokens=lambda text: len(text.split()) + 2, context_length=77)
    assert "short" in registry and "wordy" not in registry
    (problem,) = registry.skipped
    assert (problem.plugin, problem.distribution, problem.task) == ("acme", "acme-tasks", "wordy")
    assert "over the model's context of 77" in problem.reason
    # Issue 12 item 14: NOT_FOUND says why instead of a misleading "did you mean"
    with pytest.raises(NotFoundError, match="task 'wordy' from plugin 'acme' was skipped at start-up: .*context"):
        registry.get("wordy")
    assert "wordy" in load_registry()  # without a tokenizer (no model) the prompt is not judged


def test_start_up_summary_counts_only_the_plugins_that_loaded(install, caplog) -> None:
    mod = module_name()
    install("broken-plugin", {"broken": f"{mod}:tasks"}, {mod: "import not_a_real_module_xyz\n"})
    with caplog.at_level(logging.INFO, logger="echosearch.server.tasks.registry"):
        registry = load_registry()
    summary = next(r.message for r in caplog.records if r.message.startswith("loaded "))
    assert summary.startswith("loaded 31 task(s) from 1 plugin(s)") and "1 plugin(s) failed to load" in summary
    (problem,) = registry.skipped
    assert problem.plugin == "broken" and problem.task == "" and "not_a_real_module_xyz" in problem.reason


def test_clients_see_the_skipped_plugins(install, tmp_path, capsys) -> None:
    """ListTasks and GetServerInfo carry the skipped plugins; `echosearch tasks` prints them."""
    from echosearch.client import Client
    from echosearch.client.cli import main
    from tests.fixtures.servers import start_inprocess

    broken, wordy = module_name(), module_name()
    install("broken-plugin", {"broken": f"{broken}:tasks"}, {broken: "import not_a_real_module_xyz\n"})
    long_prompt = "ECHO " * 100
    source = f"from echosearch.tasks.spec import Task\ntasks = [Task(name='wordy', kind='binary', prompts=({long_prompt!r},))]\n"
    install("acme-tasks", {"acme": f"{wordy}:tasks"}, {wordy: source})
    running = start_inprocess(tmp_path / "data")
    try:
        with Client(running.address) as client:
            tasks, skipped = client.list_tasks_and_problems()
            assert "wordy" not in {t.name for t in tasks}
            assert {(p.plugin, p.task) for p in skipped} == {("broken", ""), ("acme", "wordy")}
            assert {p.plugin for p in client.info().skipped_plugins} == {"broken", "acme"}
            with pytest.raises(Exception, match="from plugin 'acme' was skipped"):
                list(client.score("wordy"))
        assert main(["--server", running.address, "tasks"]) == 0
        err = capsys.readouterr().err
        assert "skipped: plugin 'broken' (broken-plugin): failed to load" in err
        assert "skipped: task 'wordy' of plugin 'acme' (acme-tasks):" in err and "context" in err
    finally:
        running.stop(2)
