"""The batching encoder's units of work: one request's frames or texts, and the row slices batches are made of."""

from __future__ import annotations

import time
from concurrent.futures import Future

import numpy as np
import torch


class FramesJob:
    """One request's frames: rows are scheduled in order, finished in any order."""

    def __init__(self, pixels: torch.Tensor, embed_dim: int) -> None:
        self.pixels = pixels
        self.rows = int(pixels.shape[0])
        self.next_row = 0  # first row not yet put in a batch
        self.unfinished = self.rows
        self.out = np.empty((self.rows, embed_dim), dtype=np.float32)
        self.future: Future[np.ndarray] = Future()
        self.submitted = time.monotonic()
        self.started: float | None = None

    @property
    def dead(self) -> bool:
        return self.future.done()  # failed or cancelled: its remaining rows are not worth encoding


class TextJob:
    def __init__(self, texts: list[str], embed_dim: int) -> None:
        self.texts = texts
        self.next_row = 0
        self.out = np.empty((len(texts), embed_dim), dtype=np.float32)
        self.future: Future[np.ndarray] = Future()


Slice = tuple[FramesJob, int, int]  # job, first row, end row


def gather(slices: list[Slice]) -> torch.Tensor:
    parts = [job.pixels[start:stop] for job, start, stop in slices]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def split(slices: list[Slice], rows: int) -> tuple[list[Slice], list[Slice]]:
    """The first `rows` rows of a batch, and the rest."""
    first: list[Slice] = []
    second: list[Slice] = []
    left = rows
    for job, start, stop in slices:
        if left >= stop - start:
            first.append((job, start, stop))
            left -= stop - start
        elif left > 0:
            first.append((job, start, start + left))
            second.append((job, start + left, stop))
            left = 0
        else:
            second.append((job, start, stop))
    return first, second
