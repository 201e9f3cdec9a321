"""The web UI: Starlette + Jinja2 pages over one echosearch gRPC Client.

Every page is rendered on the server from gRPC calls; the only assets are the package's own
CSS and inline SVG, so it works offline. Errors from the service are shown as their gRPC status
and message; anything else is logged here and shown as a one-line internal error, never a trace.
The endpoints are module-level (endpoints.py) and share the client and the templates through `app.state`.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from echosearch.client.client import ApiError, Client
from echosearch.ui import endpoints

__all__ = ["create_app", "run"]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
ROUTES = [
    Route("/", endpoints.search),
    Route("/video/{video_id:int}", endpoints.video),
    Route("/frame/{video_id:int}/{frame_index:int}.jpg", endpoints.frame),
    Route("/screen", endpoints.screen),
    Route("/evaluate", endpoints.evaluate_form, methods=["GET", "POST"]),
    Route("/reports/{run_id}", endpoints.report),
    Route("/reports/{run_id}/{name}", endpoints.report_file),
    Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
]
EXCEPTION_HANDLERS = {
    ApiError: endpoints.api_error,
    ValueError: endpoints.bad_input,
    HTTPException: endpoints.http_error,
    Exception: endpoints.internal,
}


def create_app(client: Client, *, reports_dir: Path | None = None) -> Starlette:
    """The UI application over `client`; evaluation reports are written under `reports_dir`."""
    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.state.client = client
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.reports = Path(reports_dir or tempfile.mkdtemp(prefix="echosearch-ui-reports-"))
    app.state.reports.mkdir(parents=True, exist_ok=True)
    app.state.server_line = None  # the footer, filled by the first page that reaches the server
    return app


def run(client: Client, args: argparse.Namespace) -> int:
    """Serve the UI with uvicorn until interrupted (`echosearch ui`)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(client)
    log.info("echosearch UI on http://%s:%d/ (server %s)", args.host, args.port, client.address)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
