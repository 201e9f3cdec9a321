"""The web UI: Starlette + Jinja2 pages over one echosearch gRPC Client.

Every page is rendered on the server from gRPC calls; the only assets are the package's own
CSS and inline SVG, so it works offline. Errors from the service are shown as their gRPC status
and message; anything else is logged here and shown as a one-line internal error, never a trace.
The endpoints are module-level (endpoints.py) and share the client, the templates and the
settings through `app.state`; guard.py checks every request before they see it.
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
from starlette.types import ASGIApp

from echosearch.client.client import ApiError, Client
from echosearch.ui import endpoints
from echosearch.ui.guard import Guard
from echosearch.ui.settings import UISettings

__all__ = ["EchoSearchUI", "create_app", "run"]

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


class EchoSearchUI(Starlette):
    """Starlette with the guard outside its error middleware, so even a 500 page carries the security headers."""

    def build_middleware_stack(self) -> ASGIApp:
        return Guard(super().build_middleware_stack(), self.state.settings)


def create_app(client: Client, *, reports_dir: Path | None = None, settings: UISettings | None = None) -> EchoSearchUI:
    """The UI application over `client`; evaluation reports are written under `reports_dir`."""
    app = EchoSearchUI(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.state.client = client
    app.state.settings = settings or UISettings()
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.reports = Path(reports_dir or tempfile.mkdtemp(prefix="echosearch-ui-reports-"))
    app.state.reports.mkdir(parents=True, exist_ok=True)
    app.state.server_line = None  # the footer, filled by the first page that reaches the server
    return app


def run(client: Client, args: argparse.Namespace) -> int:
    """Serve the UI with uvicorn until interrupted (`echosearch ui`)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = UISettings.from_args(args)
    app = create_app(client, settings=settings)
    log.info("echosearch UI on http://%s:%d/ (server %s)", args.host, args.port, client.address)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
