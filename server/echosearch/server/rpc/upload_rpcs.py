"""IngestVideo's and ImportEmbeddings' parts of the upload protocol (uploads.py): what each header means,
when the header alone answers, and which use case takes the body."""

from __future__ import annotations

import logging

import grpc

from echosearch.server.errors import InvalidRequestError, InvalidVideoError
from echosearch.server.records import Sampling, VideoMetadata
from echosearch.server.rpc import convert
from echosearch.server.rpc.uploads import Expected, ReceivedUpload, normalise_sha256
from echosearch.server.services import bulk, ingest
from echosearch.server.services.container import Services
from echosearch.v1 import echosearch_pb2 as pb

log = logging.getLogger(__name__)


class IngestUpload:
    """A video upload: the header's metadata and sampling are checked before a byte of the body is received."""

    method = "IngestVideo"
    header_hint = "file name, metadata, sampling; the bytes follow as chunks"

    def __init__(self, services: Services, context: grpc.ServicerContext) -> None:
        self._services, self._context = services, context
        self._metadata, self._sampling, self._channel_order = VideoMetadata(), Sampling(), "rgb"
        self._update_metadata = False

    def start(self, header: pb.IngestVideoHeader) -> Expected | pb.IngestVideoResponse:
        name = header.source_name or "upload"
        self._metadata = convert.metadata_from_proto(header.metadata)
        self._sampling = convert.sampling_from_proto(header.sampling)
        self._channel_order = convert.channel_order_from_proto(header.channel_order)
        self._update_metadata = header.update_metadata
        ingest.check_header(
            self._services, name, header.size_bytes, self._metadata, self._sampling, self._channel_order
        )
        sha256 = normalise_sha256(header.sha256)
        if sha256:  # already stored: answered from the header alone
            known = ingest.ingest_stored(self._services, sha256, self._metadata, update_metadata=self._update_metadata)
            if known is not None:
                return convert.ingest_to_proto(known)
        return Expected(name, header.size_bytes, sha256)

    def check_size(self, name: str, size: int, *, partial: bool) -> None:
        ingest.check_upload_size(self._services, name, size, partial=partial)

    def finish(self, expected: Expected, body: ReceivedUpload) -> pb.IngestVideoResponse:
        name = expected.name
        try:
            outcome = ingest.ingest_video(
                self._services,
                body.source,
                source_name=name,
                metadata=self._metadata,
                sampling=self._sampling,
                channel_order=self._channel_order,
                sha256=body.sha256,
                update_metadata=self._update_metadata,
            )
        except InvalidVideoError as exc:
            if name in str(exc):
                raise
            # The uploader may be sending hundreds of files: say which one is bad.
            raise InvalidVideoError(f"{name}: {exc}") from exc
        if not self._context.is_active():
            # Ingest is idempotent by content hash, so the stored video stays: a retry answers already_stored.
            log.info(
                "IngestVideo: %s stored as video %d, but the caller had already gone (cancelled or past its deadline)",
                name,
                outcome.video.video_id,
            )
        return convert.ingest_to_proto(outcome)


class ShardUpload:
    """A `bulk embed` shard: the same slots, idle timeout, size limit and spool as a video upload."""

    method = "ImportEmbeddings"
    header_hint = "shard name, size, sha256; the shard's bytes follow as chunks"

    def __init__(self, services: Services) -> None:
        self._services = services

    def start(self, header: pb.ImportEmbeddingsHeader) -> Expected | pb.ImportEmbeddingsResponse:
        name = header.shard_name or "shard"
        digest = normalise_sha256(header.sha256)
        if len(digest) != 64:
            raise InvalidRequestError(f"{name}: the header needs the shard file's hex sha256 (64 characters)")
        ingest.check_upload_size(self._services, name, header.size_bytes)
        if not header.force:
            done = bulk.imported_shard(self._services, name, digest)
            if done is not None:  # committed before: acknowledged without reading the body
                return convert.import_to_proto(done)
        return Expected(name, header.size_bytes, digest)

    def check_size(self, name: str, size: int, *, partial: bool) -> None:
        ingest.check_upload_size(self._services, name, size, partial=partial)

    def finish(self, expected: Expected, body: ReceivedUpload) -> pb.ImportEmbeddingsResponse:
        outcome = bulk.import_shard(self._services, body.source, name=expected.name, shard_sha256=expected.sha256)
        return convert.import_to_proto(outcome)
