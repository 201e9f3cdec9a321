"""Web UI cost: a search page with 24 best-frame thumbnails vs the bare SearchByText call behind it.

    .venv/bin/python bench/ui.py [--videos 48] [--k 24] [--repeats 30] [--model random:tiny]

A real server (in process) and the UI under uvicorn, fetched over HTTP like a browser fetches the
HTML (thumbnails are inline, so the page is complete in one response). Alternates the two calls and
prints the ratio of medians. Target: page <= 2x the bare call.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from echosearch.client import Client  # noqa: E402
from echosearch.ui.app import create_app  # noqa: E402
from tests.fixtures.servers import start_inprocess  # noqa: E402
from tests.fixtures.synthetic import make_video  # noqa: E402
from tests.fixtures.uihelp import RunningUI  # noqa: E402

QUERY = "A PACEMAKER LEAD IS SEEN IN THE RIGHT ATRIUM."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--k", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        running = start_inprocess(Path(tmp) / "data")
        client = Client(running.address, timeout=60)
        ui = None
        try:
            for s in range(args.videos):
                client.ingest(make_video(seed=s, width=160, height=120, frames=40), source_name=f"echo-{s}.avi")
            ui = RunningUI(create_app(client, reports_dir=Path(tmp) / "reports"))
            url = f"{ui.url}/?" + urllib.parse.urlencode({"q": QUERY, "k": args.k})
            bare, page, size = [], [], 0
            for i in range(args.repeats + 2):  # two warm-up rounds
                for which in ("bare", "page") if i % 2 else ("page", "bare"):
                    start = time.perf_counter()
                    if which == "bare":
                        found = client.search_by_text(QUERY, k=args.k)
                        assert len(found) == args.k
                    else:
                        body = urllib.request.urlopen(url).read()
                        size = len(body)
                    if i >= 2:
                        (bare if which == "bare" else page).append(time.perf_counter() - start)
            thumbs = body.count(b"data:image/jpeg;base64,")
        finally:
            if ui is not None:
                ui.stop()
            client.close()
            running.stop(2)
    ratio = statistics.median(page) / statistics.median(bare)
    print(f"{args.videos} videos (random:tiny), k={args.k}, {args.repeats} alternating repeats, CPU")
    print("| measure | value |")
    print("|---|---|")
    print(
        f"| search page ({thumbs} inline thumbnails, {size / 1024:.0f} KiB HTML) / bare SearchByText | {ratio:.2f}x (target <= 2x) |"
    )


if __name__ == "__main__":
    main()
