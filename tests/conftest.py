"""Fixtures every test module shares: the real echo, one tiny model, in-process servers and their channels.

The helpers themselves (synthetic videos and DICOMs, stores, child servers, the reference method) live in
the `tests.fixtures` package and are imported by name.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.fixtures.servers import start_inprocess
from tests.fixtures.servers import tiny_model as shared_tiny_model

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
EXAMPLE_VIDEO = SHARED_DATA / "example_video.avi"


@pytest.fixture(scope="session")
def example_video() -> Path:
    """The real apical-4-chamber echo from ../shared/data; skipped where it is absent."""
    if not EXAMPLE_VIDEO.exists():
        pytest.skip("../shared/data/example_video.avi is not present")
    return EXAMPLE_VIDEO


@pytest.fixture(scope="session")
def tiny_model():
    """The seeded `random:tiny` model on the CPU, loaded once per run: every in-process server shares it."""
    return shared_tiny_model()


@pytest.fixture(scope="module")
def serve_inprocess(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., object]]:
    """Start in-process servers on fresh data directories (`**options` as `start_inprocess` takes them);
    each one stops when the module is done."""
    running = []

    def start(name: str = "data", **options):
        server = start_inprocess(tmp_path_factory.mktemp(name), **options)
        running.append(server)
        return server

    yield start
    for server in reversed(running):
        server.stop(2)


@pytest.fixture(scope="module")
def server(serve_inprocess):
    """The module's server: defaults, unless the module overrides this fixture with its own options."""
    return serve_inprocess()


@pytest.fixture(scope="module")
def client(server):
    """The Python client on the module's server."""
    from echosearch.client import Client

    with Client(server.address, timeout=60) as connected:
        yield connected


@pytest.fixture(scope="module")
def served_model(client) -> tuple[str, int]:
    """(model identity, embedding width) of the module's server: what a shard for it must carry."""
    info = client.info()
    return info.model_identity, info.embed_dim


@pytest.fixture(scope="module")
def channel(server) -> Iterator[grpc.Channel]:
    opened = grpc.insecure_channel(server.address)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def stub(channel):
    """The raw generated stub on the module's server, for requests the Python client would not send."""
    from echosearch.v1 import echosearch_pb2_grpc as pb_grpc

    return pb_grpc.EchoSearchServiceStub(channel)


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """install(dist, {entry point: "module:attr"}, {module: source}) -> a fake installed distribution."""
    from echosearch.server.tasks.registry import ENTRY_POINT_GROUP

    def _install(dist: str, entry_points: dict[str, str], modules: dict[str, str], root: Path | None = None) -> None:
        root = root or tmp_path / f"site-{uuid.uuid4().hex[:8]}"
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            monkeypatch.delitem(sys.modules, module, raising=False)
        monkeypatch.syspath_prepend(str(root))

    return _install
