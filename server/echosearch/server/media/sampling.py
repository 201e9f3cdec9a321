"""Which frames of a video are embedded: the Sampling every decoder (video, DICOM) applies, checked once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echosearch.server.errors import InvalidRequestError

MODES = ("reference", "all", "every", "count")
REFERENCE_WINDOW = 40  # the published code keeps frames [0 : min(40, n) : 2]


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video to embed; checked once, when it is made (an invalid Sampling cannot exist)."""

    mode: str = "reference"  # reference: [0:min(40,n):2]; all; every: every `step`-th; count: `count` evenly spaced
    step: int = 2
    count: int = 20
    max_frames: int = 512  # hard cap on frames embedded per video

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InvalidRequestError with an actionable message when an option is out of range."""
        if self.mode not in MODES:
            raise InvalidRequestError(f"unknown sampling mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.max_frames < 1:
            raise InvalidRequestError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.mode == "every" and self.step < 1:
            raise InvalidRequestError(f"sampling 'every' needs step >= 1, got {self.step}")
        if self.mode == "count" and not 1 <= self.count <= self.max_frames:
            raise InvalidRequestError(
                f"sampling 'count' needs 1 <= count <= max_frames ({self.max_frames}), got {self.count}; "
                "a server embeds at most its --max-frames-per-video frames per video (default 512)"
            )

    def indices(self, n: int) -> np.ndarray:
        """Frame indices this sampling embeds from a stream of `n` frames."""
        if self.mode == "reference":
            idx = np.arange(0, min(REFERENCE_WINDOW, n), 2)
        elif self.mode == "all":
            idx = np.arange(n)
        elif self.mode == "every":
            idx = np.arange(0, n, self.step)
        else:
            idx = np.unique(np.linspace(0, n - 1, min(self.count, n)).round()) if n > 0 else np.arange(0)
        return idx.astype(np.int64)
