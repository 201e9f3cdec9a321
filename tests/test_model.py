"""Model loading by spec, identity, and encode contracts (random:tiny; no network, no real weights)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from echosearch.server.errors import ModelLoadError
from echosearch.server.model import EchoClipModel, load_model


@pytest.fixture(scope="module")
def tiny(tiny_model) -> EchoClipModel:
    return tiny_model


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(7, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def test_tiny_loads_with_contract_attributes(tiny: EchoClipModel) -> None:
    assert tiny.spec == "random:tiny"
    assert tiny.identity.startswith("random:tiny@sha256:") and len(tiny.identity.split(":")[-1]) >= 16
    assert tiny.context_length == 77 and tiny.image_size == 224
    assert tiny.device == torch.device("cpu") and tiny.precision == "fp32"
    # From the model's open_clip preprocess config (the defaults: EchoCLIP's published statistics)
    assert tiny.mean == OPENAI_DATASET_MEAN and tiny.std == OPENAI_DATASET_STD
    assert not tiny.clip.training


def test_frames_are_l2_normalised_float32_and_batching_is_invisible(tiny: EchoClipModel, pixels: torch.Tensor) -> None:
    full = tiny.encode_frames(pixels)
    assert full.shape == (7, tiny.embed_dim) and full.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    small = load_model("random:tiny", device="cpu", batch_size=3)
    np.testing.assert_allclose(small.encode_frames(pixels), full, atol=1e-5)
    # Different frames give different embeddings (the model is not degenerate).
    assert float(full[0] @ full[1]) < 0.9999


def test_texts_are_normalised_and_tokens_counted(tiny: EchoClipModel) -> None:
    texts = ["LV EJECTION FRACTION IS 55%. ", "SEVERE DILATED LEFT ATRIUM. ", "hello"]
    emb = tiny.encode_texts(texts)
    assert emb.shape == (3, tiny.embed_dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert tiny.encode_texts([]).shape == (0, tiny.embed_dim)
    assert tiny.count_tokens("hello") == 3  # start + "hello" + end
    assert tiny.count_tokens("word " * 100) == 102  # not truncated: callers validate against context_length
    np.testing.assert_allclose(tiny.encode_texts(texts[:1])[0], emb[0], atol=1e-5)


def test_identity_is_stable_across_loads(tiny: EchoClipModel, pixels: torch.Tensor) -> None:
    again = load_model("random:tiny", device="cpu")
    assert again.identity == tiny.identity
    np.testing.assert_array_equal(again.encode_frames(pixels[:2]), tiny.encode_frames(pixels[:2]))


def test_local_dir_round_trip_and_identity_differs_between_weights(
    tiny: EchoClipModel, pixels: torch.Tensor, tmp_path
) -> None:
    folder = tiny.save_dir(tmp_path / "tiny")
    assert json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]["embed_dim"] == tiny.embed_dim
    loaded = load_model(f"local-dir:{folder}", device="cpu")
    np.testing.assert_array_equal(loaded.encode_frames(pixels), tiny.encode_frames(pixels))
    np.testing.assert_array_equal(loaded.encode_texts(["LV"]), tiny.encode_texts(["LV"]))
    assert loaded.identity.startswith(f"local-dir:{folder}@sha256:")
    assert load_model(f"local-dir:{folder}", device="cpu").identity == loaded.identity

    with torch.no_grad():
        loaded.clip.logit_scale.add_(1.0)
    other = load_model(f"local-dir:{loaded.save_dir(tmp_path / 'other')}", device="cpu")
    assert other.identity.split("@")[1] != loaded.identity.split("@")[1]


def test_unknown_prefix_lists_valid_ones() -> None:
    with pytest.raises(ModelLoadError, match=r"hf-hub:.*local-dir:.*random:"):
        load_model("s3://bucket/model")
    with pytest.raises(ModelLoadError, match="random:echoclip"):
        load_model("random:huge")


def test_bad_local_dir_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="open_clip_config.json"):
        load_model(f"local-dir:{tmp_path / 'missing'}")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}}))
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(f"local-dir:{tmp_path}")


def test_bad_device_and_precision() -> None:
    with pytest.raises(ModelLoadError, match="precision"):
        load_model("random:tiny", precision="int3")
    with pytest.raises(ModelLoadError, match="device"):
        load_model("random:tiny", device="tpu")


def test_hub_failure_names_local_dir_and_does_not_hang(monkeypatch, tmp_path) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="local-dir:") as info:
        load_model("hf-hub:mkaichristensen/echo-clip")
    assert time.monotonic() - start < 10
    assert "hf-hub:mkaichristensen/echo-clip" in str(info.value)


@pytest.mark.parametrize("precision,floor", [("bf16", 0.98), ("fp16", 0.995)])
def test_reduced_precision_embeddings_stay_close_to_fp32(precision: str, floor: float) -> None:
    # The precisions a GPU deployment would pick, checked on the CPU: float32 out, normalised, near fp32.
    torch.manual_seed(0)
    pixels = torch.randn(4, 3, 224, 224)
    texts = ["ECHO DENSITY IN RIGHT VENTRICLE SUGGESTIVE OF CATHETER, PACER LEAD, OR ICD LEAD. "]
    full = load_model("random:tiny", device="cpu")
    low = load_model("random:tiny", device="cpu", precision=precision)
    assert low.precision == precision and low.identity == full.identity  # same weights, same store
    for a, b in (
        (full.encode_frames(pixels), low.encode_frames(pixels)),
        (full.encode_texts(texts), low.encode_texts(texts)),
    ):
        assert b.dtype == np.float32
        assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-3)
        assert float(np.sum(a * b, axis=1).min()) >= floor


def test_local_dir_reads_back_the_preprocess_config_save_dir_writes(tiny: EchoClipModel, tmp_path) -> None:
    folder = tiny.save_dir(tmp_path / "tiny")
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert config["preprocess_cfg"]["mean"] == list(tiny.mean) and config["preprocess_cfg"]["size"] in (224, [224, 224])
    # A checkpoint trained with other statistics and a smaller input is preprocessed its own way.
    config["preprocess_cfg"].update(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    config["model_cfg"]["vision_cfg"]["image_size"] = 160
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    loaded = load_model(f"local-dir:{folder}", device="cpu")
    assert loaded.mean == (0.5, 0.5, 0.5) and loaded.std == (0.25, 0.25, 0.25)
    assert loaded.image_size == 160


def test_spec_is_parsed_once_into_scheme_and_target() -> None:
    from echosearch.server.model import ModelSpec

    assert ModelSpec.parse("local-dir:/a:b") == ModelSpec("local-dir", "/a:b")
    assert ModelSpec.parse("hf-hub:org/repo") == ModelSpec("hf-hub", "org/repo")
    with pytest.raises(ModelLoadError, match="valid prefixes"):
        ModelSpec.parse("ViT-B-32")
