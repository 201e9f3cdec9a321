"""Running a batch on the model's device: on CUDA through two pinned host buffers and a copy stream, so the next
batch is copied while the previous one computes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from echosearch.server.model import EchoClipModel


@dataclass
class Launched:
    out: torch.Tensor  # (n,D) float32 on the host (being filled, on CUDA, until `done`)
    done: torch.cuda.Event | None


class DeviceRunner:
    """Moves host batches to the model's device and starts them; on CUDA through two pinned buffers and a copy stream."""

    def __init__(self, model: EchoClipModel, max_rows: int) -> None:
        self.model = model
        self.max_rows = max_rows
        self.cuda = model.device.type == "cuda"
        if self.cuda:
            self._copy_stream = torch.cuda.Stream(model.device)
            self._buffers: list[torch.Tensor | None] = [None, None]
            self._copied: list[torch.cuda.Event | None] = [None, None]
            self._turn = 0

    def launch(self, pixels: torch.Tensor) -> Launched:
        if not self.cuda:
            return Launched(self.model.image_features(pixels), None)
        with torch.inference_mode():
            return self._launch_cuda(pixels)

    def _launch_cuda(self, pixels: torch.Tensor) -> Launched:
        i, self._turn = self._turn, self._turn ^ 1
        if self._copied[i] is not None:
            self._copied[i].synchronize()  # this buffer's previous copy to the device has finished
        buffer = self._buffers[i]
        if (
            buffer is None
            or buffer.dtype != pixels.dtype
            or buffer.shape[1:] != pixels.shape[1:]
            or len(buffer) < len(pixels)
        ):
            buffer = torch.empty(
                (max(self.max_rows, len(pixels)), *pixels.shape[1:]), dtype=pixels.dtype, pin_memory=True
            )
            self._buffers[i] = buffer
        host = buffer[: len(pixels)]
        host.copy_(pixels)
        compute = torch.cuda.current_stream(self.model.device)
        with torch.cuda.stream(self._copy_stream):
            on_device = host.to(self.model.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self._copy_stream)
        self._copied[i] = copied
        compute.wait_event(copied)
        on_device.record_stream(compute)
        features = self.model.image_features(on_device)
        out = torch.empty(features.shape, dtype=torch.float32, pin_memory=True)
        out.copy_(features, non_blocking=True)
        done = torch.cuda.Event()
        done.record(compute)
        return Launched(out, done)

    def finish(self, launched: Launched) -> np.ndarray:
        if launched.done is not None:
            launched.done.synchronize()
        return launched.out.cpu().numpy()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
