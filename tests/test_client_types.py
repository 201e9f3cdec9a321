"""The client's light mirror types (client/types.py) keep their fields in step with the server's records.

A field added to a server record must reach the client type (or be listed here with the reason it does
not); a field dropped from one must go from the other. The proto sits between them, so each listed
difference is a decision about what the wire carries, made once, here.
"""

from __future__ import annotations

import dataclasses

import pytest

from echosearch.client import types as client
from echosearch.server import records, status_records


class server:  # the server's records, wherever they live
    def __getattr__(self, name):
        return getattr(records, name, None) or getattr(status_records, name)


server = server()

# (client type, server record, {client-only field: why}, {server-only field: why})
MIRRORS = [
    ("VideoMetadata", "VideoMetadata", {}, {}),
    ("Video", "VideoRecord", {"sequence": "the wire's name for seq"}, {"seq": "the client calls it sequence"}),
    ("FrameHit", "FrameHit", {}, {"video_id": "a hit travels inside its video's result"}),
    ("SearchResult", "SearchResult", {}, {}),
    ("IngestResult", "IngestOutcome", {}, {}),
    ("MetadataConflict", "MetadataConflict", {}, {}),
    ("ImportResult", "ImportOutcome", {}, {}),
    ("BackupProgress", "BackupProgress", {}, {}),
    ("PluginProblem", "PluginProblem", {}, {"message": "the log's sentence; clients get the reason"}),
    ("VideoScore", "VideoScore", {}, {}),
    ("Sampling", "Sampling", {}, {}),
    ("VideoFilter", "VideoFilter", {}, {}),
    ("CustomTask", "TaskRequest", {"value_range": "the server takes a range as values=(start, stop, step)"}, {}),
    (
        "ServerInfo",
        "ServerInfo",
        {f"search_{f}": "SearchBackendInfo, flattened" for f in ("backend", "device", "precision", "memory_bytes")}
        | {f"warm_up_{f}": "WarmUpState, flattened" for f in ("texts_done", "texts_total", "finished", "error")},
        {
            "search": "flattened into search_* on the client",
            "decode": "merged into EncoderInfo's decode_* fields",
            "warm_up": "flattened into warm_up_* on the client",
        },
    ),
    (
        "EncoderInfo",
        "EncoderStats",
        {
            "decode_workers": "DecodePoolStats.workers",
            "decode_worker_restarts": "DecodePoolStats.restarts",
            "decode_crashes": "DecodePoolStats.crashes",
            "decode_timeouts": "DecodePoolStats.timeouts",
            "decode_timeout_s": "DecodePoolStats.time_limit_s",
        },
        {},
    ),
]


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("client_name,server_name,client_only,server_only", MIRRORS, ids=[m[0] for m in MIRRORS])
def test_client_type_mirrors_the_server_record(client_name, server_name, client_only, server_only):
    ours, theirs = _fields(getattr(client, client_name)), _fields(getattr(server, server_name))
    assert ours - theirs == set(client_only), f"client.{client_name} differs from records.{server_name}"
    assert theirs - ours == set(server_only), f"records.{server_name} differs from client.{client_name}"


def test_the_decode_fields_of_encoder_info_are_the_decode_pool_stats():
    decode = {"workers", "restarts", "crashes", "timeouts", "time_limit_s"}
    assert decode <= _fields(server.DecodePoolStats)  # `busy` and `decoded` stay on the server
