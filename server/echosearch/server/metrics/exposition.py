"""The /metrics HTTP endpoint: a registry of its own per server (tests run several in one process), with the
client library's process, platform and GC collectors, the RPC metrics and the components' collector."""

from __future__ import annotations

from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from echosearch.server.metrics.collector import ServicesCollector, UploadCounts
from echosearch.server.metrics.rpc_metrics import RpcMetrics
from echosearch.server.services.container import Services


@dataclass
class MetricsServer:
    """A running /metrics endpoint; `rpc` is what the servicer reports each call's end to."""

    registry: CollectorRegistry
    rpc: RpcMetrics
    http: WSGIServer
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def start_metrics(services: Services, uploads: UploadCounts, host: str, port: int) -> MetricsServer:
    """Serve /metrics on host:port (0: a free port); OSError when the port is taken."""
    disable_created_metrics()  # no `_created` series beside each counter and histogram (half the series, no use)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    rpc = RpcMetrics(registry)
    registry.register(ServicesCollector(services, uploads))
    http, _thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(registry, rpc, http, host, http.server_port)  # serve.py logs its URL with the start line
