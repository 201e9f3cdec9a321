"""The components' state as Prometheus families, read when scraped: ingest, encoder, decode pool, store, tasks.

Nothing here runs on a request's path: each component counts its own events (event_counts.py, its stats()),
and a scrape reads them (two catalog counts under the search read lock, like GetServerInfo).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from echosearch.server.event_counts import HistogramSnapshot, Tally
from echosearch.server.services.container import Services
from echosearch.server.services.info import package_version

log = logging.getLogger(__name__)


class UploadCounts(Protocol):
    """What the upload protocol (rpc/uploads.py) counts."""

    refused: Tally
    bytes_received: Tally
    slots: int
    slots_in_use: int


def _gauge(name: str, doc: str, value: float, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, snap: HistogramSnapshot) -> HistogramMetricFamily:
    buckets = [(_bound(b), c) for b, c in zip(snap.upper_bounds, snap.cumulative)] + [("+Inf", snap.count)]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=snap.total)


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


class ServicesCollector(Collector):
    """Every `echosearch_` family but the RPC ones (metrics/rpc_metrics.py)."""

    def __init__(self, services: Services, uploads: UploadCounts) -> None:
        self._services = services
        self._uploads = uploads

    def collect(self) -> Iterator[Metric]:
        s = self._services
        yield _gauge(
            "echosearch_build_info", "The echosearch version serving (always 1).", 1, version=package_version()
        )
        yield from self._ingest()
        yield from self._encoder()
        yield from self._decode()
        try:
            yield from self._store()
        except Exception:  # the store is closing (shutdown): its families are left out of this scrape
            log.debug("store metrics unavailable", exc_info=True)
        prompts = s.prompts
        yield _counter(
            "echosearch_tasks_prompt_cache_hits", "Prompt texts found in memory or the catalog.", prompts.hits
        )
        yield _counter("echosearch_tasks_prompt_cache_misses", "Prompt texts the encoder had to embed.", prompts.misses)
        skipped = GaugeMetricFamily(
            "echosearch_tasks_skipped_plugins",
            "Task plugins (or their tasks) skipped at start, by entry-point name and reason: how many.",
            labels=["plugin", "reason"],
        )
        for (plugin, reason), count in Counter((p.plugin, p.reason) for p in s.registry.skipped).items():
            skipped.add_metric([plugin, reason], count)
        yield skipped
        yield _gauge("echosearch_tasks", "Tasks registered: plugins and stored custom tasks.", self._task_count())

    def _task_count(self) -> int:
        return len(self._services.registry) + len(self._services.stored_tasks.list())

    def _ingest(self) -> Iterator[Metric]:
        stored, up = self._services.store.stored, self._uploads
        yield _counter(
            "echosearch_ingest_videos", "New videos committed since start (repeats excluded).", stored.get("videos")
        )
        yield _counter("echosearch_ingest_frames", "Frame embeddings of those videos.", stored.get("frames"))
        yield _counter(
            "echosearch_ingest_received_bytes",
            "Bytes of upload bodies received in full.",
            up.bytes_received.get("bodies"),
        )
        yield _gauge("echosearch_ingest_upload_slots_in_use", "Uploads being received now.", up.slots_in_use)
        yield _gauge(
            "echosearch_ingest_upload_slots", "Uploads received at once at most (--max-concurrent-uploads).", up.slots
        )
        refused = CounterMetricFamily(
            "echosearch_ingest_uploads_refused",
            "Uploads refused or abandoned, by reason: busy, too_large, invalid, invalid_video, decode_timeout, "
            "disk_full, idle_timeout, cancelled.",
            labels=["reason"],
        )
        for reason, count in sorted(up.refused.snapshot().items()):
            refused.add_metric([reason], count)
        yield refused

    def _encoder(self) -> Iterator[Metric]:
        encoder = self._services.encoder
        stats = encoder.stats()
        texts_waiting, frames_waiting = encoder.queue_position()
        yield _gauge("echosearch_encoder_info", "The encoder's device and precision (always 1).", 1,
                     device=stats.device, precision=stats.precision)  # fmt: skip
        yield _gauge("echosearch_encoder_queued_frames", "Frames waiting for the encoder.", frames_waiting)
        yield _gauge("echosearch_encoder_queued_texts", "Text requests waiting for the encoder.", texts_waiting)
        yield _counter("echosearch_encoder_batches", "Frame batches encoded.", stats.batches)
        yield _counter("echosearch_encoder_frames", "Frames encoded.", stats.frames)
        yield _counter("echosearch_encoder_retried_batches", "Batches that failed and were retried as halves.",
                       stats.retried_batches)  # fmt: skip
        yield _histogram(
            "echosearch_encoder_batch_frames", "Frames per encoded batch.", encoder.batch_size_histogram.snapshot()
        )
        yield _histogram(
            "echosearch_encoder_queue_wait_seconds",
            "Time an ingest's frames waited before their first batch.",
            encoder.queue_wait_histogram.snapshot(),
        )

    def _decode(self) -> Iterator[Metric]:
        d = self._services.decode_pool.stats()
        yield _gauge("echosearch_decode_workers", "Decode worker processes.", d.workers)
        yield _gauge("echosearch_decode_workers_busy", "Decode workers decoding now.", d.busy)
        yield _counter("echosearch_decode_videos", "Uploads decoded.", d.decoded)
        yield _counter(
            "echosearch_decode_restarts", "Decode workers restarted (after a crash or a timeout).", d.restarts
        )
        yield _counter("echosearch_decode_crashes", "Decode workers that died decoding.", d.crashes)
        yield _counter("echosearch_decode_timeouts", "Decodes stopped at their time limit.", d.timeouts)

    def _store(self) -> Iterator[Metric]:
        st = self._services.store.stats()
        yield _gauge("echosearch_store_videos", "Videos in the catalog.", st["videos"])
        yield _gauge("echosearch_store_frames", "Frame embeddings in the catalog.", st["frames"])
        yield _gauge("echosearch_store_index_info", "The frame index type and the search backend (always 1).", 1,
                     index_factory=st["index_factory"], backend=st["search_backend"], device=str(st["search_device"]))  # fmt: skip
        yield _gauge("echosearch_store_index_vectors", "Vectors in the frame index.", st["index_vectors"])
        yield _gauge(
            "echosearch_store_index_tombstones", "Removed vectors the frame index still holds.", st["index_tombstones"]
        )
        if st["snapshot_age_s"] is not None:
            yield _gauge(
                "echosearch_store_snapshot_age_seconds",
                "Seconds since the index snapshot was written.",
                st["snapshot_age_s"],
            )
        yield _gauge("echosearch_store_unsaved_changes", "Catalog changes the index snapshot does not cover yet.",
                     max(0, st["catalog_seq"] - st["saved_seq"]))  # fmt: skip
        yield _gauge(
            "echosearch_store_catalog_bytes", "Bytes of the catalog file and its write-ahead log.", st["catalog_bytes"]
        )
        yield _gauge("echosearch_store_search_memory_bytes", "Device memory the resident search matrix holds.",
                     st["search_memory_bytes"])  # fmt: skip
