"""The UI's pages and error pages, as module-level Starlette endpoints.

What they share lives on `request.app.state` (set by app.create_app): `client` (the gRPC Client),
`templates`, `settings`, `reports` (the evaluation reports' folder) and `server_line` (the footer).
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from echosearch.client.client import ApiError
from echosearch.client.params import parse_filter
from echosearch.client.types import VideoFilter
from echosearch.ui import pages

log = logging.getLogger(__name__)

REPORT_FILE = re.compile(r"^[a-z0-9_]+\.(png|json|txt)$")
RUN_ID = re.compile(r"^[0-9a-f]{16}$")
HTTP_FOR_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
}
COPY_BYTES = 1 << 20  # an upload is copied to the run's folder this much at a time


def filter_from_text(text: str) -> VideoFilter | None:
    """The CLI's --filter syntax, one KEY=VALUE per line (or separated by ';')."""
    pairs = [p.strip() for p in re.split(r"[\n;]", text or "") if p.strip()]
    return parse_filter(pairs)


def _footer(state: State) -> str:
    """Which server and model answer, asked once (by the first page that reaches the server)."""
    if state.server_line is None:
        try:
            info = state.client.info()
        except ApiError:
            return f"server {state.client.address} (unreachable)"
        state.server_line = f"server {state.client.address} · echosearch {info.version} · model {info.model_spec}"
    return state.server_line


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """A template of templates/ with the base page's context (current page, footer)."""
    state = request.app.state
    base = {"page": name.removesuffix(".html"), "footer": _footer(state)}
    return state.templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


K_RANGE = (1, 200)


def _k(text: str | None, default: int = 24) -> int:
    """The `k` of a page: absent is the default; anything outside 1..200 is refused (as the CLI's -k 0 is),
    never silently replaced."""
    if not text:
        return default
    lo, hi = K_RANGE
    try:
        k = int(text)
    except ValueError:
        k = lo - 1
    if not lo <= k <= hi:
        raise ValueError(f"k must be a whole number from {lo} to {hi}, not {text!r}")
    return k


# ---- pages ------------------------------------------------------------------------------------------


def search(request: Request) -> Response:
    q = request.query_params
    text, flt_text = q.get("q", "").strip(), q.get("filter", "")
    k = _k(q.get("k"))
    aggregation = q.get("aggregation", "max") if q.get("aggregation") in ("max", "mean") else "max"
    results = []
    if text:
        found = request.app.state.client.search_by_text(
            text, k=k, aggregation=aggregation, filter=filter_from_text(flt_text), thumbnails=True
        )
        results = [pages.result_card(r) for r in found]
    return render(
        request,
        "search.html",
        {"q": text, "filter": flt_text, "k": k, "aggregation": aggregation, "results": results},
    )


def video(request: Request) -> Response:
    video_id = int(request.path_params["video_id"])
    text = request.query_params.get("q", "").strip()
    return render(request, "video.html", pages.video_page(request.app.state.client, video_id, text))


def frame(request: Request) -> Response:
    video_id, frame_index = int(request.path_params["video_id"]), int(request.path_params["frame_index"])
    jpeg = request.app.state.client.frame_image(video_id, frame_index)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def screen(request: Request) -> Response:
    client = request.app.state.client
    q = request.query_params
    tasks = client.list_tasks()
    name, flt_text = q.get("task", ""), q.get("filter", "")
    k = _k(q.get("k"))
    context: dict[str, Any] = {"tasks": tasks, "task_name": name, "filter": flt_text, "k": k, "screen": None}
    if name:
        context["screen"] = pages.screen(client, name, filter_from_text(flt_text), k)
    return render(request, "screen.html", context)


async def evaluate_form(request: Request) -> Response:
    """GET: the form. POST (same-origin only, see guard.py): save the labels, evaluate, show the report."""
    state = request.app.state
    if request.method == "GET":
        tasks = await run_in_threadpool(state.client.list_tasks)
        return render(request, "evaluate.html", {"tasks": tasks, "error": None})
    async with request.form(max_files=1, max_fields=8) as form:
        upload = form.get("labels")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise ValueError("choose a labels CSV file to upload")
        run_id = secrets.token_hex(8)
        folder = state.reports / run_id
        folder.mkdir()
        labels = folder / "labels.csv"
        await _save(upload, labels)
        task, key = str(form.get("task", "")), str(form.get("key", "id"))
        label_column = str(form.get("label_column", "")).strip() or None
        shown_as = Path(upload.filename.replace("\\", "/")).name or "the uploaded file"  # the user's name for it
    await run_in_threadpool(pages.run_evaluation, state.client, task, labels, key, folder, label_column, shown_as)
    return RedirectResponse(f"/reports/{run_id}", status_code=303)


async def _save(upload: UploadFile, path: Path) -> None:
    """Copy an upload (Starlette spools one over 1 MiB to disk) a chunk at a time, never whole in memory."""
    await upload.seek(0)
    with path.open("wb") as out:
        while chunk := await upload.read(COPY_BYTES):
            out.write(chunk)


def report(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    folder = request.app.state.reports / run_id
    if not RUN_ID.match(run_id) or not (folder / "metrics.json").is_file():
        raise HTTPException(404, f"no evaluation report {run_id!r}")
    return render(request, "report.html", pages.report_page(folder, run_id))


def report_file(request: Request) -> Response:
    run_id, name = request.path_params["run_id"], request.path_params["name"]
    path = request.app.state.reports / run_id / name
    if not RUN_ID.match(run_id) or not REPORT_FILE.match(name) or not path.is_file():
        raise HTTPException(404, f"no report file {name!r}")
    return FileResponse(path)


# ---- error pages: the gRPC status and message, never a traceback ---------------------------------------


def _error_page(request: Request, code: str, message: str, status: int) -> Response:
    return render(request, "error.html", {"code": code, "message": message, "back": _back(request)}, status)


def _back(request: Request) -> str | None:
    """The page the user came from, when it is one of the UI's own (the Back link; no script needed)."""
    referer = urlsplit(request.headers.get("referer", ""))
    if not referer.path.startswith("/") or referer.netloc.lower() != request.headers.get("host", "").lower():
        return None
    return referer.path + (f"?{referer.query}" if referer.query else "")


def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_page(request, exc.code.name, exc.message, HTTP_FOR_STATUS.get(exc.code, 502))


def bad_input(request: Request, exc: Exception) -> Response:
    return _error_page(request, "INVALID_INPUT", str(exc), 400)


def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error_page(request, f"HTTP {exc.status_code}", exc.detail, exc.status_code)


def internal(request: Request, exc: Exception) -> Response:
    log.error("UI request %s failed", request.url.path, exc_info=exc)
    return _error_page(request, "INTERNAL", "internal error in the web UI; its log has the details", 500)
