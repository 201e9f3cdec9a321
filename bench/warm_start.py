"""Warm start (issue 19 item 2): the first video page after a restart, with the prompt cache already warm.

An in-process server on `random:echoclip` (EchoCLIP's architecture, random weights: its text tower costs what
the real one does) stores a few synthetic videos and warms up (every registered task's prompts encoded into
the catalog), then stops. It is started again on the same data directory, and the web UI's video page (every
task scored for one video) is fetched as soon as the server listens, then again. Compared with the same page on
a fresh store (prompts not yet encoded, warm-up off: what the first page cost before the warm-up existed).

    .venv/bin/python bench/warm_start.py
"""

from __future__ import annotations

import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from echosearch.client import Client  # noqa: E402
from tests.fixtures.servers import start_inprocess  # noqa: E402
from tests.fixtures.synthetic import make_video  # noqa: E402
from tests.fixtures.uihelp import RunningUI  # noqa: E402

MODEL = "random:echoclip"


def first_page(data: Path, *, warm_up: bool, videos: int = 0) -> tuple[float, float, float]:
    """(seconds from start to listening, first full video page, second page) of a server over `data`."""
    from echosearch.ui.app import create_app

    t0 = time.perf_counter()
    running = start_inprocess(data, model_spec=MODEL, warm_up=warm_up)
    listening = time.perf_counter() - t0
    try:
        with Client(running.address, timeout=600) as client:
            for s in range(videos):
                client.ingest(make_video(seed=s, frames=16), source_name=f"w{s}.avi")
            vid = client.list_videos(page_size=1).videos[0].video_id
            ui = RunningUI(create_app(client, reports_dir=data.parent / "reports"))
            try:
                pages = []
                for _ in range(2):
                    t = time.perf_counter()
                    while True:  # a page that still shows the warm-up's progress is not the answer yet
                        with urllib.request.urlopen(f"{ui.url}/video/{vid}", timeout=600) as r:
                            body = r.read().decode()
                        if "preparing the task prompts" not in body:
                            break
                        time.sleep(0.2)
                    pages.append(time.perf_counter() - t)
            finally:
                ui.stop()
        if warm_up:
            running.services.warm_up.when_over(600)
    finally:
        running.stop(2)
    return listening, pages[0], pages[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        warm, cold = Path(tmp) / "warm", Path(tmp) / "cold"
        first_page(warm, warm_up=True, videos=3)  # fills the store and, through the warm-up, the prompt cache
        listening, page, again = first_page(warm, warm_up=True)
        _, cold_page, _ = first_page(cold, warm_up=False, videos=3)
    print("| random:echoclip, CPU | seconds |")
    print("| --- | ---: |")
    print(f"| restart with a warm prompt cache: start to listening | {listening:.2f} |")
    print(f"| ... then the first video page (31 tasks scored) | {page:.2f} |")
    print(f"| ... the next video page | {again:.2f} |")
    print(f"| first video page of a fresh store without the warm-up (prompts encoded on demand) | {cold_page:.2f} |")


if __name__ == "__main__":
    main()
