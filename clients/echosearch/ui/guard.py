"""The UI's front door, the outermost ASGI layer: who may ask, from which page, with how large a body.

- the Host header must name this UI (UISettings.host_allowed): DNS rebinding gets 400;
- a state-changing request (POST ...) must come from the UI's own pages (Origin / Referer /
  Sec-Fetch-Site): a cross-origin form post gets 403 before anything runs;
- a request body is capped: a Content-Length over the cap gets 413 before a byte is read, and a body
  without one is counted as it streams (the endpoint's form parsing stops at the cap with 413);
- every response, refusals and error pages included, carries CSP, X-Frame-Options and nosniff.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from echosearch.ui.settings import UISettings

# Only the UI's own files: no inline or foreign script (the pages have none), styles from /static,
# thumbnails inline as data: URIs, forms posting back here, never inside a frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OWN_PAGE_SITES = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of the UI's own pages and of typed URLs


def size_text(n: int) -> str:
    """A byte count as people say it: "64 MiB" when it is whole mebibytes."""
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


class UploadTooLarge(HTTPException):
    """A request body past --max-upload-bytes (raised while it streams; shown as a 413 error page)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"the upload is larger than this UI accepts ({size_text(limit)}): upload fewer labels, "
            "or start `echosearch ui` with a larger --max-upload-bytes",
        )


def cross_origin(headers: Headers) -> str | None:
    """Why a state-changing request did not come from one of the UI's own pages; None when it did.

    Browsers send Origin with every POST (Referer where an old one does not); a request with neither
    is not from a browser (curl, a script), and cross-site request forgery needs a browser.
    """
    site = headers.get("sec-fetch-site")
    if site is not None and site not in OWN_PAGE_SITES:
        return f"the request came from another site (Sec-Fetch-Site: {site})"
    source = headers.get("origin") or headers.get("referer")
    if source is None:
        return None
    netloc = urlsplit(source).netloc.lower() if source != "null" else ""
    if netloc != headers.get("host", "").strip().lower():
        return f"the request came from {source!r}, not from this UI's own pages"
    return None


class Guard:
    """ASGI middleware: the checks above, then the app with a body-counting `receive`."""

    def __init__(self, app: ASGIApp, settings: UISettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, _counting(receive, self.settings.max_upload_bytes), send)

    def _refusal(self, scope: Scope, headers: Headers) -> PlainTextResponse | None:
        host = headers.get("host", "")
        if not self.settings.host_allowed(host):
            return PlainTextResponse(
                f"400: this UI does not answer to the host {host!r}. If that is its name, start "
                "`echosearch ui` with --allowed-host NAME.\n",
                400,
            )
        if scope["method"] not in SAFE_METHODS:
            why = cross_origin(headers)
            if why is not None:
                return PlainTextResponse(f"403: cross-origin request refused: {why}.\n", 403)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.settings.max_upload_bytes:
            return PlainTextResponse(f"413: {UploadTooLarge(self.settings.max_upload_bytes).detail}.\n", 413)
        return None


def _with_security_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS:
                headers[name] = value
        await send(message)

    return sending


def _counting(receive: Receive, limit: int) -> Receive:
    """`receive` that raises UploadTooLarge once the body passes `limit` bytes (a body without Content-Length)."""
    received = 0

    async def receiving() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise UploadTooLarge(limit)
        return message

    return receiving
