"""ServerConfig: every `echosearch serve` option in one object, and the `serve` flags built from it.

Each option is a field of a small options class owned by the concern that uses it, which also holds
its default and flag (options.py): ModelOptions (model_options.py), StorageOptions (storage/options.py),
MediaOptions (media/options.py), EncoderOptions (encoder_options.py), Limits (limits.py), and the
process's own NetworkOptions (here). ServerConfig composes them; `services.container.Services` builds the
service from it and `serve.py` the gRPC server. Light on purpose: `echosearch --help` builds the flags.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from echosearch.server.encoder_options import EncoderOptions
from echosearch.server.limits import Limits
from echosearch.server.media.options import MediaOptions
from echosearch.server.model_options import ModelOptions
from echosearch.server.options import add_flags, check_ranges, option, values_from_args
from echosearch.server.storage.options import StorageOptions

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class NetworkOptions:
    """Where and how the gRPC server listens, and how it stops (serve.py)."""

    TITLE: ClassVar[str] = "network"

    host: str = option("127.0.0.1", flag="--host", help="address to listen on (default {default}; 0.0.0.0: all)")
    port: int = option(50051, flag="--port", help="port to listen on (default {default}; 0: any free port)")
    workers: int = option(16, flag="--workers", minimum=1, help="RPC worker threads (default {default})")
    tls_cert: Path | None = option(
        None, flag="--tls-cert", type=Path, help="PEM certificate chain (with --tls-key: serve TLS)"
    )
    tls_key: Path | None = option(None, flag="--tls-key", type=Path, help="PEM private key")
    token_file: Path | None = option(
        None,
        flag="--token-file",
        type=Path,
        help="require this bearer token (else env ECHOSEARCH_TOKEN; neither: no auth)",
    )
    metrics_port: int | None = option(
        None,
        flag="--metrics-port",
        type=int,
        minimum=0,
        help="serve Prometheus metrics at http://HOST:PORT/metrics, on --host (default off; 0: any free port)",
    )
    grace: float = option(30.0, flag="--grace", help="seconds in-flight calls get on SIGTERM (default {default})")


@dataclass(frozen=True)
class ServerConfig:
    """What `echosearch serve` runs with: the data directory, the log level, and one options object per concern."""

    data_dir: Path = option(Path("./echosearch-data"), flag="--data", help="data directory (default {default})")
    log_level: str = option(
        "INFO",
        flag="--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="server log detail on stderr (default {default})",
    )
    log_format: str = option(
        "text",
        flag="--log-format",
        choices=("text", "json"),
        help="server log lines: text, or one JSON object each with time, level, logger, message, and the call's "
        "rpc_method, request_id, rpc_code, duration_ms (default {default})",
    )
    model: ModelOptions = field(default_factory=ModelOptions)
    storage: StorageOptions = field(default_factory=StorageOptions)
    media: MediaOptions = field(default_factory=MediaOptions)
    encoder: EncoderOptions = field(default_factory=EncoderOptions)
    network: NetworkOptions = field(default_factory=NetworkOptions)
    limits: Limits = field(default_factory=Limits)

    def with_options(self, **values: Any) -> ServerConfig:
        """A copy with options replaced by field name, wherever they live (`max_upload_bytes=`, `phi=`, ...)."""
        top = {k: values.pop(k) for k in list(values) if k in _TOP_LEVEL}
        groups: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            group = _GROUP_OF.get(name)
            if group is None:
                raise TypeError(f"ServerConfig has no option {name!r}")
            groups.setdefault(group, {})[name] = value
        changed = {g: dataclasses.replace(getattr(self, g), **v) for g, v in groups.items()}
        return dataclasses.replace(self, **top, **changed)

    def check(self) -> None:
        """ValueError naming the flag of the first option out of range."""
        for group in (self, *(getattr(self, g) for g in _GROUPS)):
            check_ranges(group)


_TOP_LEVEL = {"data_dir", "log_level", "log_format"}
_GROUPS: dict[str, type] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(ServerConfig)
    if f.name not in _TOP_LEVEL
}
_GROUP_OF = {f.name: group for group, cls in _GROUPS.items() for f in dataclasses.fields(cls)}


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    """Every ServerConfig option as a flag of `parser`, one argument group per options class."""
    add_flags(parser, ServerConfig)
    for name, cls in _GROUPS.items():
        add_flags(parser.add_argument_group(cls.TITLE), cls, f"{name}.")  # type: ignore[attr-defined]


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The ServerConfig a parsed `serve` command line asks for (ValueError naming a flag out of range)."""
    groups = {name: cls(**values_from_args(cls, args, f"{name}.")) for name, cls in _GROUPS.items()}
    config = ServerConfig(**values_from_args(ServerConfig, args), **groups)
    config.check()
    return config
