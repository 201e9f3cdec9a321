"""The web UI: Starlette + Jinja2 pages over one echosearch gRPC Client.

Every page is rendered on the server from gRPC calls; the only assets are the package's own
CSS and inline SVG, so it works offline. Errors from the service are shown as their gRPC status
and message; anything else is logged here and shown as a one-line internal error, never a trace.
"""

from __future__ import annotations

import argparse
import logging
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from echosearch.client.client import ApiError, Client
from echosearch.client.params import parse_filter
from echosearch.client.types import VideoFilter
from echosearch.ui import pages

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REPORT_FILE = re.compile(r"^[a-z0-9_]+\.(png|json|txt)$")
RUN_ID = re.compile(r"^[0-9a-f]{16}$")
HTTP_FOR_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
}


def filter_from_text(text: str) -> VideoFilter | None:
    """The CLI's --filter syntax, one KEY=VALUE per line (or separated by ';')."""
    pairs = [p.strip() for p in re.split(r"[\n;]", text or "") if p.strip()]
    return parse_filter(pairs)


def create_app(client: Client, *, reports_dir: Path | None = None) -> Starlette:
    """The UI application over `client`; evaluation reports are written under `reports_dir`."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    reports = Path(reports_dir or tempfile.mkdtemp(prefix="echosearch-ui-reports-"))
    reports.mkdir(parents=True, exist_ok=True)

    server_line: list[str] = []  # what the footer says, filled by the first page that reaches the server

    def footer() -> str:
        if not server_line:
            try:
                info = client.info()
            except ApiError:
                return f"server {client.address} (unreachable)"
            server_line.append(f"server {client.address} · echosearch {info.version} · model {info.model_spec}")
        return server_line[0]

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        base = {"page": name.removesuffix(".html"), "footer": footer()}
        return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)

    def search(request: Request) -> Response:
        q = request.query_params
        text, flt_text = q.get("q", "").strip(), q.get("filter", "")
        k = _int(q.get("k"), 24, 1, 200)
        aggregation = q.get("aggregation", "max") if q.get("aggregation") in ("max", "mean") else "max"
        results = []
        if text:
            found = client.search_by_text(
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
        return render(request, "video.html", pages.video_page(client, video_id, text))

    def frame(request: Request) -> Response:
        jpeg = client.frame_image(int(request.path_params["video_id"]), int(request.path_params["frame_index"]))
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    def screen(request: Request) -> Response:
        q = request.query_params
        tasks = client.list_tasks()
        name, flt_text = q.get("task", ""), q.get("filter", "")
        k = _int(q.get("k"), 24, 1, 200)
        context: dict[str, Any] = {"tasks": tasks, "task_name": name, "filter": flt_text, "k": k, "screen": None}
        if name:
            context["screen"] = pages.screen(client, name, filter_from_text(flt_text), k)
        return render(request, "screen.html", context)

    async def evaluate_form(request: Request) -> Response:
        tasks = client.list_tasks()
        if request.method == "GET":
            return render(request, "evaluate.html", {"tasks": tasks, "error": None})
        form = await request.form()
        upload = form.get("labels")
        if upload is None or isinstance(upload, str) or not upload.filename:
            raise ValueError("choose a labels CSV file to upload")
        run_id = secrets.token_hex(8)
        folder = reports / run_id
        folder.mkdir()
        labels = folder / "labels.csv"
        labels.write_bytes(await upload.read())
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(
            pages.run_evaluation, client, str(form.get("task", "")), labels, str(form.get("key", "id")), folder
        )
        return RedirectResponse(f"/reports/{run_id}", status_code=303)

    def report(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        folder = reports / run_id
        if not RUN_ID.match(run_id) or not (folder / "metrics.json").is_file():
            raise HTTPException(404, f"no evaluation report {run_id!r}")
        return render(request, "report.html", pages.report_page(folder, run_id))

    def report_file(request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        path = reports / run_id / name
        if not RUN_ID.match(run_id) or not REPORT_FILE.match(name) or not path.is_file():
            raise HTTPException(404, f"no report file {name!r}")
        return FileResponse(path)

    def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        status = HTTP_FOR_STATUS.get(exc.code, 502)
        return render(request, "error.html", {"code": exc.code.name, "message": exc.message}, status)

    def bad_input(request: Request, exc: Exception) -> Response:
        return render(request, "error.html", {"code": "INVALID_INPUT", "message": str(exc)}, 400)

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return render(
            request, "error.html", {"code": f"HTTP {exc.status_code}", "message": exc.detail}, exc.status_code
        )

    def internal(request: Request, exc: Exception) -> Response:
        log.error("UI request %s failed", request.url.path, exc_info=exc)
        message = "internal error in the web UI; its log has the details"
        return render(request, "error.html", {"code": "INTERNAL", "message": message}, 500)

    routes = [
        Route("/", search),
        Route("/video/{video_id:int}", video),
        Route("/frame/{video_id:int}/{frame_index:int}.jpg", frame),
        Route("/screen", screen),
        Route("/evaluate", evaluate_form, methods=["GET", "POST"]),
        Route("/reports/{run_id}", report),
        Route("/reports/{run_id}/{name}", report_file),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers = {ApiError: api_error, ValueError: bad_input, HTTPException: http_error, Exception: internal}
    return Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]


def _int(text: str | None, default: int, lo: int, hi: int) -> int:
    try:
        return min(hi, max(lo, int(text))) if text else default
    except ValueError:
        return default


def run(client: Client, args: argparse.Namespace) -> int:
    """Serve the UI with uvicorn until interrupted (`echosearch ui`)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(client)
    log.info("echosearch UI on http://%s:%d/ (server %s)", args.host, args.port, client.address)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
