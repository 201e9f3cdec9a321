"""What GetServerInfo reports: version, model, devices, index, counts, limits, the ingest path's statistics."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from echosearch.server.services.container import Services
from echosearch.server.status_records import SearchBackendInfo, ServerInfo, WarmUpState


def package_version() -> str:
    """The installed echosearch version, or 0+unknown in a bare checkout."""
    try:
        return version("echosearch")
    except PackageNotFoundError:
        return "0+unknown"


def server_info(services: Services) -> ServerInfo:
    """Version, model identity, device, index type, counts, the upload limit, skipped plugins, encoder and decoders."""
    model, store, reader = services.model, services.store, services.reader
    return ServerInfo(
        version=package_version(),
        model_spec=model.spec,
        model_identity=model.identity,
        device=str(model.device),
        precision=model.precision,
        embed_dim=model.embed_dim,
        index_factory=store.index_factory,
        index_on_gpu=bool(store.on_gpu),
        videos=reader.count_videos(),
        frames=reader.count_frames(),
        tasks=len(services.registry) + len(services.stored_tasks.list()),
        max_upload_bytes=services.limits.max_upload_bytes,
        search=SearchBackendInfo(**store.search_backend_info()),
        skipped_plugins=tuple(services.registry.skipped),
        encoder=services.encoder.stats(),
        decode=services.decode_pool.stats(),
        warm_up=services.warm_up.state() if services.warm_up is not None else WarmUpState(0, 0, True),
    )
