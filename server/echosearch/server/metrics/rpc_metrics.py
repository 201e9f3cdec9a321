"""Per-RPC request counts by method and gRPC status code, and a latency histogram by method."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram

from echosearch.server.event_counts import LATENCY_BUCKETS_S


class RpcMetrics:
    """`echosearch_rpc_requests_total{method,code}` and `echosearch_rpc_duration_seconds{method}`.

    `observe` runs at the end of every call (rpc/request_log.py), so the labelled children are cached: the
    client library's `labels()` lookup costs more than the increment itself.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "echosearch_rpc_requests",
            "RPCs finished, by method and gRPC status code (CANCELLED: the caller went away).",
            ("method", "code"),
            registry=registry,
        )
        self._duration = Histogram(
            "echosearch_rpc_duration_seconds",
            "Time from a call's start to its status, by method (uploads include receiving the body).",
            ("method",),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._lock = threading.Lock()

    def observe(self, method: str, code: str, seconds: float) -> None:
        children = self._children.get((method, code))
        if children is None:
            with self._lock:
                children = (self._requests.labels(method, code), self._duration.labels(method))
                self._children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)
