"""CatalogReader: the read-only face of the catalog that Store hands to the layers above it (the use cases, the
scoring service, stored tasks, bulk imports).

Writes go through Store alone (it keeps the indexes in step); holders of a reader cannot write.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from echosearch.server.records import FrameEmbeddings, VideoFilter, VideoRecord
from echosearch.server.storage.catalog import Catalog


class CatalogReader:
    """Read methods of one Catalog, nothing else."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @property
    def model_identity(self) -> str | None:
        """The model identity the store is bound to (None until the first write)."""
        return self._catalog.model_identity

    @property
    def embed_dim(self) -> int | None:
        """The embedding width the store is bound to."""
        return self._catalog.embed_dim

    def find_by_sha256(self, sha256: str) -> VideoRecord | None:
        """The video with these content bytes, if stored."""
        return self._catalog.find_by_sha256(sha256)

    def get_video(self, video_id: int) -> VideoRecord:
        """One video; NotFoundError when absent."""
        return self._catalog.get_video(video_id)

    def get_frames(self, video_id: int) -> FrameEmbeddings:
        """A stored video's frames and embeddings; NotFoundError when absent."""
        return self._catalog.get_frames(video_id)

    def get_video_and_frames(self, video_id: int) -> tuple[VideoRecord, FrameEmbeddings]:
        """A video and its frames read in one snapshot (a racing delete gives NotFoundError, never half)."""
        return self._catalog.get_video_and_frames(video_id)

    def list_videos(
        self, flt: VideoFilter | None = None, *, limit: int = 100, after_id: int | None = None
    ) -> list[VideoRecord]:
        """Videos matching `flt` in id order, `limit` at a time after `after_id`."""
        return self._catalog.list_videos(flt, limit=limit, after_id=after_id)

    def count_videos(self, flt: VideoFilter | None = None) -> int:
        """How many videos match `flt`."""
        return self._catalog.count_videos(flt)

    def last_seq(self) -> int:
        """The sequence number of the latest committed write: any change to the videos moves it."""
        return self._catalog.last_seq()

    def count_frames(self) -> int:
        """Stored frames in total."""
        return self._catalog.count_frames()

    def select_video_ids(self, flt: VideoFilter | None) -> np.ndarray:
        """Ids (int64, sorted) of the videos matching `flt`."""
        return self._catalog.select_video_ids(flt)

    def load_embeddings(self, video_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(video ids found, offsets, embeddings) for those ids, in the given order."""
        return self._catalog.load_embeddings(video_ids)

    def iter_embedding_batches(
        self, video_ids: np.ndarray | None, batch_videos: int = 4096
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """load_embeddings over `video_ids`, `batch_videos` at a time."""
        return self._catalog.iter_embedding_batches(video_ids, batch_videos)

    def scan_video_embeddings(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every stored video, whole, as (video ids, offsets, embeddings) batches in id order: one sequential scan."""
        return self._catalog.scan_video_embeddings()

    def imported_shard(self, shard_sha256: str) -> tuple[int, int, int] | None:
        """(videos added, videos already stored, frames added) of a bulk shard committed before, else None."""
        return self._catalog.imported_shard(shard_sha256)

    def get_prompt_embeddings(self, model_identity: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached text embeddings of `model_identity` for those `texts` that are cached."""
        return self._catalog.get_prompt_embeddings(model_identity, texts)

    def thumbnail_count(self) -> int:
        """How many thumbnails are stored."""
        return self._catalog.thumbnail_count()

    def frame_image(self, video_id: int, frame_index: int) -> bytes | None:
        """The JPEG thumbnail of one stored frame (by decode index), or None."""
        return self._catalog.frame_image(video_id, frame_index)

    def thumbnails_for(self, frame_ids: Sequence[int]) -> dict[int, bytes]:
        """frame_id -> JPEG thumbnail, for the given frames that have one."""
        return self._catalog.thumbnails_for(frame_ids)

    def stored_tasks(self) -> dict[str, str]:
        """name -> JSON of every stored task."""
        return self._catalog.stored_tasks()

    def export_parquet(self, path: Path, flt: VideoFilter | None = None) -> int:
        """Write one row per frame to a Parquet file (reads the catalog only); returns rows."""
        return self._catalog.export_parquet(path, flt)
