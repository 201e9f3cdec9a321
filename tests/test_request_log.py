"""Issue 20 item 2: one log line per RPC with its request id, the same id at the client, JSON lines on demand."""

from __future__ import annotations

import json
import logging

import grpc
import pytest

from echosearch.client import ApiError
from echosearch.client.cli import main
from echosearch.server.log_format import JsonFormatter
from tests.fixtures.servers import ServerProcess


def test_each_call_is_logged_once_with_its_request_id_and_the_client_gets_it(client, server, caplog, capsys):
    caplog.set_level(logging.INFO, logger="echosearch")
    with pytest.raises(ApiError) as err:
        client.get_video(424242)
    rid = err.value.request_id
    assert err.value.code == grpc.StatusCode.NOT_FOUND and len(rid) == 16
    lines = [r for r in caplog.records if r.name == "echosearch.rpc" and r.request_id == rid]
    assert len(lines) == 1 and lines[0].rpc_method == "GetVideo" and lines[0].rpc_code == "NOT_FOUND"
    assert lines[0].duration_ms >= 0
    # every line the call logged carries the id (the status line of the error, too)
    assert any(r.name != "echosearch.rpc" and r.request_id == rid for r in caplog.records)
    client.info()
    ok = [r for r in caplog.records if r.name == "echosearch.rpc" and r.rpc_method == "GetServerInfo"]
    assert ok and ok[-1].rpc_code == "OK" and ok[-1].request_id not in (None, rid)
    assert main(["--server", server.address, "video", "424242"]) == 1
    assert "(request id " in capsys.readouterr().err  # the CLI prints it with the error


def test_the_json_formatter_writes_one_object_per_record():
    record = logging.LogRecord("echosearch.rpc", logging.INFO, __file__, 1, "%s %s", ("GetVideo", "OK"), None)
    record.rpc_method, record.request_id, record.duration_ms = "GetVideo", "abc", 1.5
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GetVideo OK" and line["request_id"] == "abc" and line["level"] == "INFO"
    assert line["time"].endswith("+00:00") and line["rpc_method"] == "GetVideo" and line["duration_ms"] == 1.5


@pytest.mark.slow  # a child process, Ray or many uploads: seconds of the quick loop
def test_serve_log_format_json_writes_json_lines(tmp_path):
    server = ServerProcess(tmp_path / "data", extra=["--log-format", "json", "--warm-up", "off"])
    try:
        address = server.wait_ready()
        from echosearch.client import Client

        with Client(address) as client:
            client.info()
            with pytest.raises(ApiError) as err:
                client.get_video(99)
        rid = err.value.request_id
    finally:
        server.terminate()
    lines = [json.loads(line) for line in server.lines if line.strip()]  # every line parses
    assert any("listening on" in line["message"] for line in lines)
    calls = [line for line in lines if line.get("rpc_method") == "GetVideo" and line["logger"] == "echosearch.rpc"]
    assert len(calls) == 1 and calls[0]["request_id"] == rid and calls[0]["rpc_code"] == "NOT_FOUND"
