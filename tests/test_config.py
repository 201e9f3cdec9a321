"""ServerConfig: every serve option named once — one field, one flag, its default in the module that owns it."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from echosearch.client.cli import build_parser, main
from echosearch.server.config import ServerConfig, config_from_args
from echosearch.server.encoder_options import EncoderOptions
from echosearch.server.media.options import MediaOptions
from echosearch.server.model_options import ModelOptions
from echosearch.server.options import flags_of
from echosearch.server.storage.options import StorageOptions


def _groups() -> dict[str, type]:
    return {
        f.name: f.default_factory
        for f in dataclasses.fields(ServerConfig)
        if f.default_factory is not dataclasses.MISSING
    }


def test_every_option_is_one_flag_and_one_field_name():
    flags = [s.flag for s in flags_of(ServerConfig)]
    names = [s.name for s in flags_of(ServerConfig)]
    for cls in _groups().values():
        assert [f.name for f in dataclasses.fields(cls)] == [s.name for s in flags_of(cls)], cls  # every field a flag
        flags += [s.flag for s in flags_of(cls)]
        names += [s.name for s in flags_of(cls)]
    assert len(flags) == len(set(flags)) and len(names) == len(set(names))  # with_options finds each by name


def test_no_flags_give_the_defaults_and_flags_reach_their_fields():
    assert config_from_args(build_parser().parse_args(["serve"])) == ServerConfig()
    args = build_parser().parse_args(
        ["serve", "--data", "d", "--model", "random:tiny", "--thumbnails", "off", "--compile", "--phi", "drop",
         "--batch-frames", "8", "--decode-timeout", "7.5", "--index", "HNSW32", "--port", "0", "--log-level", "debug"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.data_dir == Path("d") and config.model.spec == "random:tiny" and config.log_level == "DEBUG"
    assert config.media == MediaOptions(thumbnails=False, phi="drop", decode_timeout_s=7.5)
    assert config.encoder == EncoderOptions(batch_frames=8, compile=True)
    assert config.storage.index_factory == "HNSW32" and config.network.port == 0
    assert ServerConfig().with_options(phi="drop", max_upload_bytes=5).limits.max_upload_bytes == 5
    with pytest.raises(TypeError, match="no option 'nope'"):
        ServerConfig().with_options(nope=1)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--batch-frames", "0"], "--batch-frames (batch_frames) must be >= 1, not 0"),
        (["--batch-wait-ms", "-1"], "--batch-wait-ms (batch_wait_ms) must be >= 0, not -1"),
        (["--decode-workers", "0"], "--decode-workers (decode_workers) must be >= 1, not 0"),
        (["--decode-timeout", "0"], "--decode-timeout (decode_timeout_s) must be > 0, not 0"),
        (["--max-upload-mb", "0"], "--max-upload-mb (max_upload_bytes) must be >= 1, not 0"),
    ],
)
def test_an_option_out_of_range_is_a_usage_error_naming_its_flag(flags, message, capsys):
    assert main(["serve", *flags]) == 2
    assert message in capsys.readouterr().err


def test_each_default_is_the_one_its_options_class_holds():
    """The code that uses an option reads its default from the options class, not a second literal."""
    from echosearch.server import encoder, model
    from echosearch.server.media import decode_pool, prepare
    from echosearch.server.media.dicom import phi
    from echosearch.server.storage.store import Store

    assert encoder.DEFAULT_BATCH_WAIT_MS == EncoderOptions().batch_wait_ms
    assert decode_pool.DEFAULT_TIME_LIMIT_S == MediaOptions().decode_timeout_s
    assert phi.DEFAULT_PHI_MODE == MediaOptions().phi and prepare.DEFAULT_DICOM_MASK == MediaOptions().dicom_mask
    load = inspect.signature(model.load_model).parameters
    assert (load["spec"].default, load["device"].default, load["precision"].default) == (
        ModelOptions().spec,
        ModelOptions().device,
        ModelOptions().precision,
    )
    store = inspect.signature(Store).parameters
    opts = StorageOptions()
    assert store["index_factory"].default == opts.index_factory
    assert store["search_device"].default == opts.search_device
    assert store["matrix_precision"].default == opts.search_precision
