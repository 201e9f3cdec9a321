"""Issue 20 item 1: Prometheus metrics on `serve --metrics-port`, read by the client library's parser and scraped
by a real Prometheus (Debian's `prometheus`, installed by .ci/run; that test skips with the reason without it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from echosearch.client import ApiError
from tests.fixtures.servers import ROOT, free_port
from tests.fixtures.synthetic import make_video

SECRET_NAME = "patient-Doe-Jane-4711.avi"  # a file name that must never become a label value
SECRET_PROMPT = "secret prompt about patient Jane Doe"


@pytest.fixture(scope="module")
def server(serve_inprocess):
    return serve_inprocess(metrics_port=0)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    assert SECRET_NAME not in body and "Jane" not in body and "4711" not in body
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_rpcs_ingest_encoder_store_and_refusals(server, client):
    url = server.metrics.url
    before = scrape(url)
    assert value(before, "echosearch_rpc_requests_total", method="IngestVideo", code="OK") == 0
    video = make_video(frames=24, seed=3)
    result = client.ingest(video, source_name=SECRET_NAME)
    client.search_by_text(SECRET_PROMPT, k=3)
    with pytest.raises(ApiError):
        client.ingest(b"this is not a video", source_name=SECRET_NAME)
    after = scrape(url)
    assert value(after, "echosearch_rpc_requests_total", method="IngestVideo", code="OK") == 1
    assert value(after, "echosearch_rpc_requests_total", method="IngestVideo", code="INVALID_ARGUMENT") == 1
    assert value(after, "echosearch_rpc_requests_total", method="SearchByText", code="OK") == 1
    assert value(after, "echosearch_rpc_duration_seconds_count", method="SearchByText") == 1
    assert value(after, "echosearch_ingest_videos_total") == 1
    assert value(after, "echosearch_ingest_frames_total") == result.video.sampled_frames > 0
    assert value(after, "echosearch_ingest_received_bytes_total") == len(video) + len(b"this is not a video")
    assert value(after, "echosearch_ingest_uploads_refused_total", reason="invalid_video") == 1
    assert value(after, "echosearch_ingest_upload_slots_in_use") == 0 < value(after, "echosearch_ingest_upload_slots")
    assert value(after, "echosearch_encoder_batch_frames_count") >= 1
    assert value(after, "echosearch_encoder_batch_frames_sum") == value(after, "echosearch_encoder_frames_total")
    assert value(after, "echosearch_encoder_queue_wait_seconds_count") >= 1
    assert value(after, "echosearch_encoder_info", device="cpu", precision="fp32") == 1
    assert value(after, "echosearch_store_videos") == 1
    assert value(after, "echosearch_store_frames") == value(after, "echosearch_ingest_frames_total")
    assert value(after, "echosearch_store_catalog_bytes") > 0
    list(client.score("pacemaker"))
    list(client.score("pacemaker"))
    scored = scrape(url)
    misses = value(scored, "echosearch_tasks_prompt_cache_misses_total")
    assert misses >= 1 and value(scored, "echosearch_tasks_prompt_cache_hits_total") >= misses  # the second call hit
    assert value(scored, "echosearch_rpc_requests_total", method="ScoreVideos", code="OK") == 2
    assert value(after, "echosearch_decode_videos_total") == 1  # the bytes that are no video never reach a decoder
    assert value(after, "process_resident_memory_bytes") > 0  # the client library's process metrics


def test_every_metric_is_named_by_the_naming_guide(server):
    body = urllib.request.urlopen(server.metrics.url, timeout=10).read().decode()
    ours = [f for f in text_string_to_metric_families(body) if f.name.startswith("echosearch_")]
    assert len(ours) >= 35
    for family in ours:
        assert family.name == family.name.lower() and "__" not in family.name
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the parser strips it: the exposed sample has it once
        if "seconds" in family.name or "bytes" in family.name:
            assert family.name.endswith(("_seconds", "_bytes")), family.name  # base units, unit as the suffix


def test_docs_operations_lists_every_metric_and_no_other(server):
    body = urllib.request.urlopen(server.metrics.url, timeout=10).read().decode()
    exposed = set()
    for family in text_string_to_metric_families(body):
        if family.name.startswith("echosearch_"):
            exposed.add(family.name + ("_total" if family.type == "counter" else ""))
    table = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(echosearch_[a-z_]+)` \|", table, flags=re.M))
    assert exposed - documented == set()
    # absent until there is one: a saved snapshot, a skipped plugin (label sets of no sample are not exposed)
    assert documented - exposed <= {"echosearch_store_snapshot_age_seconds", "echosearch_tasks_skipped_plugins"}


def test_a_skipped_plugin_is_a_gauge_by_its_entry_point_name(serve_inprocess, install):
    install("broken-plugin", {"broken_echo": "broken_echo_mod:tasks"}, {"broken_echo_mod": "import no_such_mod_q\n"})
    samples = scrape(serve_inprocess("plugins", metrics_port=0).metrics.url)
    skipped = {k: v for k, v in samples.items() if k[0] == "echosearch_tasks_skipped_plugins"}
    assert list(skipped.values()) == [1.0] and dict(next(iter(skipped))[1])["plugin"] == "broken_echo"
    assert value(samples, "echosearch_tasks") == 31  # the built-ins still load


def test_metrics_are_off_by_default(serve_inprocess):
    assert serve_inprocess("plain").metrics is None


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus binary (.ci/run installs Debian's)")
def test_a_real_prometheus_scrapes_the_server(server, client, tmp_path: Path):
    port = free_port()
    target = f"127.0.0.1:{server.metrics.port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: echosearch, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        client.ingest(make_video(frames=16, seed=11), source_name="scraped.avi")
        client.search_by_text("pacemaker lead", k=2)
        api = f"http://127.0.0.1:{port}/api/v1/query?query="
        wanted = {
            'echosearch_rpc_requests_total{method="IngestVideo",code="OK"}': 1,
            'echosearch_rpc_requests_total{method="SearchByText",code="OK"}': 1,
            "echosearch_encoder_batch_frames_count": 1,
            'echosearch_encoder_batch_frames_bucket{le="+Inf"}': 1,
        }
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(seen) < len(wanted):
            time.sleep(1)
            for query, least in wanted.items():
                try:
                    reply = json.load(urllib.request.urlopen(api + urllib.parse.quote(query), timeout=5))
                except OSError:
                    break  # Prometheus is still starting
                result = reply["data"]["result"]
                if result and float(result[0]["value"][1]) >= least:
                    seen[query] = float(result[0]["value"][1])
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert set(seen) == set(wanted), f"Prometheus saw only {seen}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_each_refused_upload_is_counted_under_its_nearest_reason():
    from echosearch.server import errors
    from echosearch.server.rpc.uploads import refusal_reason

    class NotAVideo(errors.InvalidVideoError):
        pass

    assert refusal_reason(errors.BusyError("full")) == "busy"
    assert refusal_reason(errors.TooLargeError("big")) == "too_large"
    assert refusal_reason(NotAVideo("x")) == "invalid_video"  # the nearest listed class wins
    assert refusal_reason(errors.DeadlineExceededError("slow")) == "decode_timeout"
    assert refusal_reason(ValueError("a bug")) is None  # not a refusal: INTERNAL, counted by the RPC metrics
