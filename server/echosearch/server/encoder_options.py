"""The batching encoder's options of `serve` (encoder.py uses them): light, for the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from echosearch.server.options import option

DEFAULT_BATCH_FRAMES = {"cuda": 256, "cpu": 32}  # most frames per model batch, by device kind


@dataclass(frozen=True)
class EncoderOptions:
    """How frames of concurrent uploads are batched into model calls."""

    TITLE: ClassVar[str] = "ingest path: the batching encoder"

    batch_frames: int | None = option(
        None,
        flag="--batch-frames",
        type=int,
        minimum=1,
        help=f"most frames per model batch, across uploads (default {DEFAULT_BATCH_FRAMES['cuda']} on CUDA, "
        f"{DEFAULT_BATCH_FRAMES['cpu']} on CPU)",
    )
    batch_wait_ms: float = option(
        5.0, flag="--batch-wait-ms", minimum=0, help="longest a batch waits to fill, in ms (default {default})"
    )
    compile: bool = option(False, flag="--compile", switch=True, help="torch.compile the image tower (off by default)")
