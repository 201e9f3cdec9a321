"""The model options of `serve` (which EchoCLIP, on which device, at which precision): light, for the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from echosearch.server.options import option

DEFAULT_SPEC = "hf-hub:mkaichristensen/echo-clip"
DEVICES = ("auto", "cpu", "cuda")
PRECISION_NAMES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ModelOptions:
    """The model the server loads (model.py `load_model`)."""

    TITLE: ClassVar[str] = "model"

    spec: str = option(
        DEFAULT_SPEC,
        flag="--model",
        help="model spec (default {default}, about 606 MB on first start): hf-hub:REPO, local-dir:PATH (offline), "
        "random:echoclip (EchoCLIP's architecture with random weights: try the service without a download), "
        "random:tiny (tests)",
    )
    device: str = option("auto", flag="--device", choices=DEVICES, help="(default {default}: cuda if present)")
    precision: str = option("fp32", flag="--precision", choices=PRECISION_NAMES, help="(default {default})")
    warm_up: bool = option(
        True,
        flag="--warm-up",
        help="encode every registered task's prompts in the background after start, into the persistent prompt "
        "cache, so the first video page and score need not (default {default}; `info` shows its progress)",
    )
