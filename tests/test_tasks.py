"""Task API: built-in EchoCLIP tasks, candidate expansion, custom-task validation, prompt cache."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from echosearch.plugins import echoclip
from echosearch.server.errors import InvalidRequestError, NotFoundError, TooLargeError
from echosearch.server.tasks import Task, TaskKind, ValueRange, custom_task, load_registry
from echosearch.server.tasks.prompt_cache import PromptEmbeddingCache
from echosearch.server.tasks.scoring_math import score_task

SHARED_TASKS = Path(__file__).resolve().parents[2] / "shared" / "echoclip_tasks.json"
PACKAGED_TASKS = Path(echoclip.__file__).with_name("echoclip_tasks.json")


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def published() -> list[dict]:
    return json.loads(PACKAGED_TASKS.read_text(encoding="utf-8"))["tasks"]


def test_packaged_json_is_the_shared_copy() -> None:
    if not SHARED_TASKS.exists():
        pytest.skip("../shared/echoclip_tasks.json is not present")
    assert PACKAGED_TASKS.read_bytes() == SHARED_TASKS.read_bytes()


def test_every_published_task_is_registered_verbatim(registry) -> None:
    specs = published()
    assert len(specs) == 31
    assert [t.name for t in registry.list()] == sorted(s["name"] for s in specs)
    for spec in specs:
        task = registry.get(spec["name"])
        assert task.kind is TaskKind(spec["kind"])
        assert task.prompts == tuple(spec["prompts"])  # verbatim, trailing spaces included
        assert task.source == "echosearch:echoclip"
        assert task.description
    assert registry.get("ejection_fraction").prompts[0].endswith("<#>% ")


def test_pacemaker_and_ejection_fraction(registry) -> None:
    pacemaker = registry.get("pacemaker")
    assert pacemaker.kind is TaskKind.BINARY and pacemaker.threshold == 0.298
    ef = registry.get("ejection_fraction")
    texts = ef.candidate_texts()
    assert len(texts) == 202 and len(set(texts)) == 202
    # The reference order: prompt-major, values 0..100, integers written without a decimal point.
    assert texts[0] == "THE LEFT VENTRICULAR EJECTION FRACTION IS ESTIMATED TO BE 0% "
    assert texts[100] == "THE LEFT VENTRICULAR EJECTION FRACTION IS ESTIMATED TO BE 100% "
    assert texts[101] == "LV EJECTION FRACTION IS 0%. "
    assert ef.candidate_values().tolist() == list(range(101)) * 2


def test_categorical_builtin(registry) -> None:
    rap = registry.get("right_atrial_pressure")
    assert rap.candidate_texts() == list(rap.prompts)
    assert rap.candidate_values().tolist() == [2.0, 1.0, 0.0]
    assert rap.label_for(2) == "Significantly Elevated"
    assert registry.get("left_ventricle_size").categories().tolist() == [0.0, 1.0, 2.0, 3.0]


def test_every_builtin_task_scores(registry) -> None:
    rng = np.random.default_rng(0)
    offsets = np.array([0, 20, 21, 41])
    frames = rng.standard_normal((41, 512)).astype(np.float32)
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    for task in registry.list():
        emb = rng.standard_normal((len(task.candidate_texts()), 512)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        s = score_task(task, frames, offsets, emb)
        assert s.score.shape == (3,) and np.isfinite(s.score).all(), task.name
        if task.kind is TaskKind.BINARY:
            assert (np.abs(s.score) <= 1).all()
        else:
            values = task.candidate_values()
            assert ((s.value >= values.min()) & (s.value <= values.max())).all(), task.name
        if task.kind is TaskKind.CATEGORICAL:
            assert all(label in task.labels.values() for label in s.label)
        assert (s.decision is not None) == (task.threshold is not None)


def test_unknown_task_suggests_close_names(registry) -> None:
    with pytest.raises(NotFoundError, match="pacemaker"):
        registry.get("pacemakr")


def test_value_range_and_formatting() -> None:
    assert ValueRange(0, 1, 0.1).count() == 11
    task = custom_task(name="x", kind="regression", prompts=["V <#>."], values={"from": 0, "to": 1, "step": 0.25})
    assert task.candidate_texts() == ["V 0.", "V 0.25.", "V 0.5.", "V 0.75.", "V 1."]
    task = custom_task(name="x", kind="regression", prompts=["V <#>"], values=(0, 0.3, 0.1))
    assert task.candidate_texts() == ["V 0", "V 0.1", "V 0.2", "V 0.3"]


def test_custom_tasks_of_every_kind() -> None:
    b = custom_task(name="b", kind="BINARY", prompts=["A PACEMAKER. "], threshold=0.3)
    assert b.kind is TaskKind.BINARY and b.threshold == 0.3 and b.source == "request"
    r = custom_task(name="r", kind=TaskKind.REGRESSION, prompts=["EF <#>%"], values={"from": 10, "to": 20})
    assert len(r.candidate_texts()) == 11
    c = custom_task(name="c", kind="categorical", prompts=["a", "b"], values=[0, 1], labels={"0": "no", "1": "yes"})
    assert c.label_for(1.0) == "yes"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(kind="binary", prompts=[]), InvalidRequestError, "prompt list is empty"),
        (dict(kind="binary", prompts=["ok", "  "]), InvalidRequestError, "prompt 1 is empty"),
        (dict(kind="binary", prompts="one string"), InvalidRequestError, "list of strings"),
        (dict(kind="ordinal", prompts=["a"]), InvalidRequestError, "unknown task kind 'ordinal'; use one of"),
        (dict(kind="binary", prompts=["a"], threshold=1.5), InvalidRequestError, r"outside \[-1, 1\]"),
        (dict(kind="regression", prompts=["a <#>"], threshold=0.1), InvalidRequestError, "binary tasks only"),
        (dict(kind="regression", prompts=["EF IS 5%"], values=(0, 100)), InvalidRequestError, "has no '<#>'"),
        (dict(kind="regression", prompts=["<#>"]), InvalidRequestError, "needs a value range"),
        (dict(kind="regression", prompts=["<#>"], values=(0, 10, 0)), InvalidRequestError, "step must be > 0"),
        (dict(kind="regression", prompts=["<#>"], values=(10, 0, 1)), InvalidRequestError, "'from' must be <= 'to'"),
        (dict(kind="regression", prompts=["<#>"], values=(0, 1e6, 1)), TooLargeError, "coarser step"),
        (dict(kind="regression", prompts=["<#>"], values={"to": 3}), InvalidRequestError, "malformed values"),
        (dict(kind="categorical", prompts=["a", "b"], values=[1]), InvalidRequestError, "1 category value"),
        (dict(kind="categorical", prompts=["a"]), InvalidRequestError, "one category value per prompt"),
        (
            dict(kind="categorical", prompts=["a", "b"], values=[1, 2], labels={1: "x"}),
            InvalidRequestError,
            r"\[2.0\] have no label",
        ),
        (dict(kind="binary", prompts=["a"], values=[1]), InvalidRequestError, "take no values"),
    ],
)
def test_bad_custom_tasks_get_clear_errors(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        custom_task(name="mine", **kwargs)


def test_prompt_longer_than_context_is_rejected() -> None:
    def count_tokens(text: str) -> int:
        return len(text.split()) + 2  # start + end tokens

    custom_task(name="ok", kind="binary", prompts=["w " * 75], count_tokens=count_tokens)
    with pytest.raises(InvalidRequestError, match="78 tokens, over the model's context of 77"):
        custom_task(name="long", kind="binary", prompts=["w " * 76], count_tokens=count_tokens)
    # Regression: the expanded texts are checked, so the value's own tokens count.
    with pytest.raises(InvalidRequestError, match="over the model's context"):
        custom_task(
            name="long", kind="regression", prompts=["w " * 75 + "<#>"], values=(0, 1), count_tokens=count_tokens
        )


def test_task_accepts_friendly_spellings() -> None:
    t = Task(name="t", kind="regression", prompts=["a <#>"], values={"from": 0, "to": 2})
    assert t.kind is TaskKind.REGRESSION and t.prompts == ("a <#>",) and t.values == ValueRange(0, 2, 1)
    assert hash(t) == hash(Task(name="t", kind="regression", prompts=("a <#>",), values=(0, 2)))


class FakeStore:
    """The catalog's prompt-embedding protocol, in a dict."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], np.ndarray] = {}
        self.puts = 0

    def get_prompt_embeddings(self, model_identity: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return {t: self.data[(model_identity, t)] for t in texts if (model_identity, t) in self.data}

    def put_prompt_embeddings(self, model_identity: str, mapping: Mapping[str, np.ndarray]) -> None:
        self.puts += 1
        for t, e in mapping.items():
            self.data[(model_identity, t)] = np.asarray(e)


class CountingEncoder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([np.full(4, hash(t) % 1000, dtype=np.float32) for t in texts])

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


def test_prompt_cache_encodes_each_text_once() -> None:
    store, enc = FakeStore(), CountingEncoder()
    cache = PromptEmbeddingCache(enc, "model-a", store)
    first = cache.embed(["a", "b", "a"])
    assert enc.encoded == ["a", "b"]  # duplicates in one call encoded once
    assert np.array_equal(first[0], first[2])
    again = cache.embed(["b", "c", "a"])
    assert enc.encoded == ["a", "b", "c"]
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
    assert cache.encoded_texts == 3


def test_prompt_cache_reads_the_store_across_restarts_and_models() -> None:
    store, enc = FakeStore(), CountingEncoder()
    PromptEmbeddingCache(enc, "model-a", store).embed(["x", "y"])
    restarted = PromptEmbeddingCache(enc, "model-a", store)
    out = restarted.embed(["y", "x"])
    assert enc.encoded == ["x", "y"] and out.shape == (2, 4)
    PromptEmbeddingCache(enc, "model-b", store).embed(["x"])  # another model: its own embedding
    assert enc.encoded == ["x", "y", "x"]


def test_prompt_cache_eviction_rereads_the_store_never_reencodes() -> None:
    store, enc = FakeStore(), CountingEncoder()
    cache = PromptEmbeddingCache(enc, "m", store, max_memory_texts=2)
    for texts in (["a", "b"], ["c"], ["a", "b", "c"], ["a"]):
        cache.embed(texts)
    assert sorted(enc.encoded) == ["a", "b", "c"]


def test_prompt_cache_concurrent_callers_encode_once() -> None:
    store, enc = FakeStore(), CountingEncoder()
    cache = PromptEmbeddingCache(enc, "m", store)
    texts = [f"t{i}" for i in range(50)]
    threads = [threading.Thread(target=cache.embed, args=(texts,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(enc.encoded) == sorted(texts)


def test_prompt_cache_survives_a_failing_store_write() -> None:
    class ReadOnlyStore(FakeStore):
        def put_prompt_embeddings(self, model_identity, mapping):
            raise OSError("disk full")

    enc = CountingEncoder()
    cache = PromptEmbeddingCache(enc, "m", ReadOnlyStore())
    cache.embed(["a"])
    cache.embed(["a"])
    assert enc.encoded == ["a"]
