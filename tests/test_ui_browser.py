"""The web UI in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Loads the search page, submits a query and checks every result thumbnail renders (naturalWidth > 0),
opens a video page and an evaluation report; one screenshot per page goes to test-artifacts/ui/.
Every page renders under the UI's Content-Security-Policy: Chromium reports no refusal on its console.
"""

from __future__ import annotations

import os
import time

import pytest

from echosearch.client import Client, VideoMetadata
from tests.fixtures.servers import start_inprocess
from tests.fixtures.synthetic import make_video
from tests.fixtures.uihelp import (
    ARTIFACTS,
    RunningUI,
    chromium_paths,
    csp_violations,
    rendered,
    start_chromium,
    stop_chromium,
)

pytest.importorskip("starlette", reason="the web UI needs the `ui` extra")
pytest.importorskip("matplotlib", reason="the evaluation report needs the `eval` extra")

pytestmark = pytest.mark.slow  # a browser start and ~20 page loads: about a minute on 2 cores

N_VIDEOS = 6
PATHS = chromium_paths()
# The README's screenshots: ECHOSEARCH_UI_TEST_MODEL=random:echoclip (real architecture, random weights).
MODEL = os.environ.get("ECHOSEARCH_UI_TEST_MODEL", "random:tiny")
LONG_FOLDER = "clinic-north/2024/cardiology/echo-lab/exports/weekly/full-studies"
# Whether the range of `text` inside the first element matching `css` that contains it lies inside that
# element's box (visible, not cut off by its overflow), and whether the element overflows at all.
TEXT_SHOWN = """
const [css, text] = arguments;
const el = [...document.querySelectorAll(css)].find(e => e.textContent.includes(text));
const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
let node;
while ((node = walker.nextNode()) && !node.data.includes(text)) {}
const range = document.createRange();
range.setStart(node, node.data.indexOf(text));
range.setEnd(node, node.data.indexOf(text) + text.length);
const r = range.getBoundingClientRect(), box = el.getBoundingClientRect();
return {inside: r.left >= box.left - 0.5 && r.right <= box.right + 0.5, overflows: el.scrollWidth > el.clientWidth};
"""
# The bounding box of every <text> of an SVG chart, against the chart's viewBox width.
CHART_TEXT = """
return [...document.querySelectorAll(arguments[0])].map(t => {
  const b = t.getBBox(), svg = t.ownerSVGElement;
  return {text: t.textContent, left: b.x, right: b.x + b.width, width: svg.viewBox.baseVal.width};
});
"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    from echosearch.ui.app import create_app

    tmp = tmp_path_factory.mktemp("ui")
    running = start_inprocess(tmp / "data", model_spec=MODEL)
    client = Client(running.address, timeout=60)
    for s in range(N_VIDEOS):
        md = VideoMetadata(study_id=f"study-{s}", view=("A4C", "PLAX")[s % 2], tags={"site": "north"})
        name = f"{LONG_FOLDER}/echo-{s}.avi" if s == 0 else f"echo-{s}.avi"  # a path far wider than a tile
        client.ingest(make_video(seed=s, width=160, height=120, frames=40), source_name=name, metadata=md)
    if MODEL != "random:tiny":  # a large text tower: encode every task's prompts once, before the page timers run
        first = client.list_videos(page_size=1).videos[0].video_id
        for task in client.list_tasks():
            list(client.score(task.name, video_ids=[first]))
    web_ui = RunningUI(create_app(client, reports_dir=tmp / "reports"))
    yield web_ui, client, tmp
    web_ui.stop()
    client.close()
    running.stop(2)


@pytest.fixture(scope="module")
def web():
    if isinstance(PATHS, str):
        pytest.skip(PATHS)
    browser = start_chromium(*PATHS)
    yield browser
    stop_chromium(browser)


def _wait(web, css: str, count: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        widths = rendered(web, css)
        if (len(widths) >= count and all(widths)) or time.monotonic() > deadline:
            return widths
        time.sleep(0.1)


def _shot(web, name: str) -> None:
    """A screenshot of the whole page (the window grows to the page's height, up to 2400 px)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = web.execute_script("return document.documentElement.scrollHeight")
    web.set_window_size(1280, max(700, min(2400, int(height) + 120)))
    web.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    web.set_window_size(1280, 900)


def test_search_page_renders_result_thumbnails(ui, web):
    from selenium.webdriver.common.by import By

    web_ui, client, _ = ui
    web.get(web_ui.url + "/")
    box = web.find_element(By.NAME, "q")
    box.send_keys("A PACEMAKER LEAD IS SEEN IN THE RIGHT ATRIUM.")
    box.submit()
    widths = _wait(web, "ul.grid img.thumb", N_VIDEOS)
    assert len(widths) == N_VIDEOS and all(w > 0 for w in widths), widths
    assert len(web.find_elements(By.CSS_SELECTOR, ".card .score")) == N_VIDEOS
    # a long source path is cut from the left: the tile still shows the file name
    shown = web.execute_script(TEXT_SHOWN, ".card .name", "echo-0.avi")
    assert shown == {"inside": True, "overflows": True}, shown
    _shot(web, "search")
    # Open the best result's video page: its frame strip renders, the similarity chart is drawn.
    web.find_element(By.CSS_SELECTOR, ".card a.name").click()
    widths = _wait(web, "ol.frames img", 20)
    assert len(widths) == 20 and all(w > 0 for w in widths), widths
    assert web.find_elements(By.CSS_SELECTOR, "svg.framechart circle")
    assert "pacemaker" in web.page_source
    _shot(web, "video")
    assert csp_violations(web) == []


def test_evaluation_page_renders_the_report(ui, web):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    web_ui, client, tmp = ui
    task = next(t.name for t in client.list_tasks() if t.kind == "binary" and t.threshold is not None)
    labels = tmp / "labels.csv"
    labels.write_text("study_id,label\n" + "".join(f"study-{s},{s % 2}\n" for s in range(N_VIDEOS)) + "study-x,1\n")
    web.get(web_ui.url + "/evaluate")
    Select(web.find_element(By.NAME, "task")).select_by_value(task)
    Select(web.find_element(By.NAME, "key")).select_by_value("study_id")
    web.find_element(By.NAME, "labels").send_keys(str(labels))
    web.find_element(By.CSS_SELECTOR, "form button").click()
    widths = _wait(web, "img.plot", 3, timeout=60)
    assert len(widths) == 3 and all(w > 0 for w in widths), widths  # ROC, PR, histogram
    assert "roc_auc" in web.page_source and "study-x" in web.page_source
    _shot(web, "evaluation")
    assert csp_violations(web) == []


def test_screening_and_error_pages(ui, web):
    from selenium.webdriver.common.by import By

    web_ui, client, _ = ui
    web.get(web_ui.url + "/screen?task=ejection_fraction&k=3")
    assert web.find_elements(By.CSS_SELECTOR, "svg.chart rect")
    widths = _wait(web, "ul.grid img.thumb", 6)  # highest 3 and lowest 3
    assert len(widths) == 6 and all(widths), widths
    _shot(web, "screening")
    # the threshold's label stays inside the chart, wherever the threshold falls
    web.get(web_ui.url + "/screen?task=pacemaker&k=3")
    labels = web.execute_script(CHART_TEXT, "svg.chart text.marker")
    assert [t["text"] for t in labels] == ["threshold 0.298"]
    assert all(0 <= t["left"] and t["right"] <= t["width"] for t in labels), labels
    web.get(web_ui.url + "/video/424242")
    body = web.find_element(By.TAG_NAME, "body").text
    assert "NOT_FOUND" in body and "no video with id 424242" in body and "Traceback" not in body
    _shot(web, "error")
    assert csp_violations(web) == []


def test_task_results_are_readable_on_the_video_and_screening_pages(ui, web):
    """Issue 19 item 1: percentiles for binary tasks, the unit of a regression task, category names."""
    from selenium.webdriver.common.by import By

    web_ui, client, _ = ui
    first = client.list_videos(page_size=1).videos[0].video_id
    web.get(web_ui.url + f"/video/{first}")
    _wait(web, "ol.frames img", 1)
    rows = {}
    for tr in web.find_elements(By.CSS_SELECTOR, "table tr"):
        cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        if len(cells) == 5:
            rows[cells[0]] = cells
    assert rows["pacemaker"][3].endswith(f"percentile of {N_VIDEOS} videos"), rows["pacemaker"]  # "50th percentile ..."
    assert rows["pacemaker"][2].startswith("similarity ")
    assert rows["atrial_fibrillation"][4] == "no threshold"
    assert rows["ejection_fraction"][2].endswith(" %") and "." not in rows["ejection_fraction"][2]
    lv = next(t for t in client.list_tasks() if t.name == "left_ventricle_size")
    assert rows["left_ventricle_size"][2] in lv.labels.values()  # a name, not a fractional code
    text = web.find_element(By.TAG_NAME, "body").text
    assert "What these numbers are" in text and "not medicine" in text  # the model is random:*
    assert csp_violations(web) == []
    web.get(web_ui.url + "/screen?task=left_ventricle_size&k=3")
    table = web.find_element(By.CSS_SELECTOR, "table.categories").text
    assert all(name in table for name in lv.labels.values()), table
    assert not web.find_elements(By.CSS_SELECTOR, "svg.chart")  # no histogram of fractional codes
    shown = [e.text for e in web.find_elements(By.CSS_SELECTOR, ".card .score")]
    assert shown and set(shown) <= set(lv.labels.values()), shown
    _shot(web, "screening-categorical")
    assert csp_violations(web) == []
