"""The process: a ServerConfig -> Services -> the gRPC server (echosearch.v1 + grpc.health.v1 + reflection),
TLS, bearer-token auth, drain on SIGTERM. The only module that wires rpc/ to services/."""

from __future__ import annotations

import hmac
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from echosearch.server.config import NetworkOptions, ServerConfig
from echosearch.server.errors import EchoSearchError
from echosearch.server.metrics.exposition import MetricsServer, start_metrics
from echosearch.server.rpc.request_log import install_record_factory
from echosearch.server.rpc.servicer import EchoSearchServicer
from echosearch.server.services.container import Services, open_services
from echosearch.server.services.info import server_info
from echosearch.server.services.preflight import check_data_dir
from echosearch.server.services.warmup import WarmUp
from echosearch.v1 import echosearch_pb2 as pb
from echosearch.v1 import echosearch_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EchoSearchService"].full_name
# Health stays open without a token: load balancers and orchestrators probe it without credentials.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
# Uploads arrive as ~1 MiB chunks; allow some slack for other clients' chunk sizes.
MAX_RECEIVE_BYTES = 16 << 20
# Replies with embeddings (GetVideo of a long clip sampled at every frame) can be large.
MAX_SEND_BYTES = 256 << 20


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses every call without `authorization: Bearer <token>` with UNAUTHENTICATED, before any handler runs."""

    def __init__(self, token: str, open_prefixes: tuple[str, ...] = OPEN_METHOD_PREFIXES) -> None:
        if not token:
            raise ValueError("empty token")
        self._expected = token.encode()
        self._open = open_prefixes

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(self._open):
            return continuation(details)
        given = None
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                break
        if given is not None and hmac.compare_digest(_bearer_credentials(given), self._expected):
            return continuation(details)
        handler = continuation(details)
        if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED
            return None
        message = (
            "missing bearer token: send metadata 'authorization: Bearer <token>' (echosearch --token or ECHOSEARCH_TOKEN)"
            if given is None
            else "wrong bearer token for this server"
        )
        return _refusal(handler, message)


def _bearer_credentials(value: bytes) -> bytes:
    """The token of an `authorization` value; the scheme name is case-insensitive (RFC 9110 11.1, RFC 6750)."""
    scheme, _, credentials = value.strip().partition(b" ")
    return credentials.strip() if scheme.lower() == b"bearer" else b""


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that aborts with UNAUTHENTICATED and reads no request."""

    def deny(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(
        deny, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


@dataclass
class RunningServer:
    """A started server and what is needed to stop it cleanly."""

    server: grpc.Server
    servicer: EchoSearchServicer
    health: health.HealthServicer
    services: Services
    address: str
    port: int
    tls: bool
    auth: bool
    metrics: MetricsServer | None = None  # the /metrics endpoint (serve --metrics-port)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self, grace: float = 10.0, *, close_services: bool = True) -> None:
        """Stop taking calls, let in-flight calls finish for `grace` seconds, then close the services (saves the index)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("stopping: no new calls; draining in-flight calls for up to %.0fs", grace)
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        # A handler past the grace period was cancelled, but its work may still be running in its
        # thread; closing the store under it would lose that write, so wait a bounded while more.
        if not self.servicer.wait_idle(max(grace, 5.0)):
            log.warning("%d calls still running after the grace period; closing anyway", self.servicer.in_flight)
        if self.metrics is not None:
            self.metrics.stop()
        if close_services:
            self.services.close()
            log.info("index saved, services closed")


@dataclass
class BoundServer:
    """A gRPC server holding its port, not yet serving: `serve` binds first, so a busy port fails in a second."""

    server: grpc.Server
    host: str
    port: int
    tls: bool
    auth: bool
    workers: int = NetworkOptions.workers


def bind_server(network: NetworkOptions, *, token: str | None = None) -> BoundServer:
    """A server bound to host:port (OSError when busy; ValueError for half a TLS pair); port 0 picks a free port."""
    interceptors = [BearerTokenInterceptor(token)] if token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=network.workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
        ],
    )
    address = f"{network.host}:{network.port}"
    tls_cert, tls_key = network.tls_cert, network.tls_key
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    try:
        if tls_cert is not None and tls_key is not None:
            creds = grpc.ssl_server_credentials([(Path(tls_key).read_bytes(), Path(tls_cert).read_bytes())])
            bound = server.add_secure_port(address, creds)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if bound == 0:
        raise OSError(f"cannot listen on {address} (in use, or not an address of this machine)")
    return BoundServer(server, network.host, bound, tls_cert is not None, token is not None, network.workers)


def start_server(
    services: Services,
    network: NetworkOptions | None = None,
    *,
    token: str | None = None,
    bound: BoundServer | None = None,
) -> RunningServer:
    """Serve `services` on `bound`, or on a server bound here (`network`, else the config's; port 0: a free port)."""
    if bound is None:
        bound = bind_server(network or services.config.network, token=token)
    services.spool.clean()  # upload spool files of a server that crashed
    install_record_factory()  # every log line of a call carries its request id
    server = bound.server
    servicer = EchoSearchServicer(services, workers=bound.workers)
    metrics = None
    metrics_port = (network or services.config.network).metrics_port
    if metrics_port is not None:  # before the server starts: a busy metrics port fails the start, not a scrape
        metrics = start_metrics(services, servicer.uploads, bound.host, metrics_port)
        servicer.rpc_observer = metrics.rpc.observe
    pb_grpc.add_EchoSearchServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    server.start()
    warm_up = services.warm_up
    ready = warm_up is None or warm_up.when_over(0)
    for name in ("", SERVICE_NAME):
        # NOT_SERVING until the prompt warm-up ends: a load balancer sends traffic once pages answer at once
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING if ready else NOT_SERVING)
    if not ready:
        threading.Thread(target=_serving_when_warm, args=(health_servicer, warm_up), daemon=True).start()
    address = f"{bound.host}:{bound.port}"
    return RunningServer(
        server, servicer, health_servicer, services, address, bound.port, bound.tls, bound.auth, metrics
    )


NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _serving_when_warm(health_servicer: health.HealthServicer, warm_up: WarmUp) -> None:
    warm_up.when_over()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("health: SERVING (prompt warm-up over)")


def read_token(token_file: Path | None) -> str | None:
    """The bearer token from a file (first line, stripped) or ECHOSEARCH_TOKEN; None when neither is set."""
    if token_file is not None:
        token = Path(token_file).read_text().strip()
        if not token:
            raise ValueError(f"token file {token_file} is empty")
        return token
    return os.environ.get("ECHOSEARCH_TOKEN") or None


def serve(config: ServerConfig, *, token: str | None = None) -> int:
    """Run until SIGTERM/SIGINT, then drain, save the index and return 0; 2 when the server cannot start.

    The cheap checks come first — the port, then the data directory (a folder, writable, not in use, bound to
    this model) — so a start that cannot succeed fails before a model is downloaded or loaded, and the data
    directory is created only once the model has loaded.
    """
    try:
        bound = bind_server(config.network, token=token)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        check_data_dir(config.data_dir, config.model.spec)
        services = open_services(config)
    except EchoSearchError as exc:
        bound.server.stop(None)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        bound.server.stop(None)
        log.debug("start failed", exc_info=True)
        print(f"error: cannot open {config.data_dir}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        running = start_server(services, bound=bound)
    except OSError as exc:  # the metrics port is taken
        bound.server.stop(None)
        services.close()
        print(f"error: --metrics-port {config.network.metrics_port}: {exc}", file=sys.stderr)
        return 2
    _run_until_signalled(running, config.network.grace)
    log.info("stopped")
    return 0


def _run_until_signalled(running: RunningServer, grace: float) -> None:
    """Log the start-up line, serve until SIGTERM or SIGINT, then stop with `grace` seconds for in-flight calls."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    info = server_info(running.services)
    log.info(
        "echosearch %s listening on %s (%s, %s) model %s on %s; %d videos, %d frames, %d tasks",
        info.version,
        running.address,
        "TLS" if running.tls else "plaintext",
        "bearer-token auth" if running.auth else "no auth",
        info.model_identity,
        info.device,
        info.videos,
        info.frames,
        info.tasks,
    )
    if running.metrics is not None:
        log.info("Prometheus metrics at %s", running.metrics.url)
    try:
        while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
            pass
        running.stop(grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
