"""Test helpers for the web UI: the app on a free port in a thread, and a headless Debian Chromium."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "ui"  # screenshots of each page (gitignored)
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,900",
)  # fmt: skip


def free_socket() -> socket.socket:
    """A socket bound to 127.0.0.1:<free port>, for an app that must know its port before it starts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class RunningUI:
    """The Starlette app under uvicorn in a daemon thread on 127.0.0.1:<free port> (or on `sock`)."""

    def __init__(self, app, sock: socket.socket | None = None) -> None:
        import uvicorn

        self.sock = sock or free_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the UI did not start within 30 s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def chromium_paths() -> tuple[str, str] | str:
    """(chromium, chromedriver) from Debian's packages, or the reason they cannot be had."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the `test` extra)"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        return "no chromium/chromedriver on PATH; `bash .ci/run` installs Debian's chromium and chromium-driver"
    return browser, driver


def start_chromium(browser: str, driver: str):
    """A headless Chromium under Selenium with a fresh profile; the network beyond localhost is never used."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="echosearch-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages, for csp_violations
    web = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    web.set_page_load_timeout(180)
    web._echosearch_profile = profile  # removed by stop_chromium
    return web


def stop_chromium(web) -> None:
    profile = getattr(web, "_echosearch_profile", None)
    try:
        web.quit()
    finally:
        if profile:
            shutil.rmtree(profile, ignore_errors=True)


def rendered(web, css: str) -> list[int]:
    """naturalWidth of every <img> matching `css` (0 for an image that did not load and decode)."""
    return web.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(i => i.complete ? i.naturalWidth : 0)", css
    )


def csp_violations(web) -> list[str]:
    """The console messages since the last call in which Chromium refused something under the page's CSP."""
    return [e["message"] for e in web.get_log("browser") if "Content Security Policy" in e["message"]]
