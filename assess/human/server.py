"""The annotation page: one static HTML page of our own and a small JSON API, on FastAPI and uvicorn.

Why not gradio (what LMSYS's arena is built with): the page is one task at a time with six
buttons and keyboard shortcuts, which is a screenful of HTML; gradio would add ~320 MB of
dependencies, seconds of import time and, unless told otherwise, calls to outside servers
at start-up, and its components would put their own state in the page, where the sides
must not be. FastAPI and uvicorn are two small, well-kept packages (the `human` extra).

The API speaks only of "A" and "B": the page asks for the annotator's next task, and sends
back a choice for a task id; the sides behind A and B are looked up here (`VerdictLog`).
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import socket
from collections.abc import Callable
from importlib import resources
from typing import Any

from assess.human.verdicts import NameRefused, RequestError, VerdictLog, clean_name
from core.exit_codes import InputError, UserError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[human]'"


def check_installed() -> None:
    """One line naming the extra when the web packages are missing."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"the page needs {' and '.join(missing)}: {INSTALL_HINT}")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; a busy port or a wrong address is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # A restarted page may take its old port back at once (connections in TIME_WAIT); a port
    # another server listens on is still refused.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is in use (another page or server?): pass --port N, "
                             f"or --port 0 for any free port") from None
        raise InputError(f"cannot listen on {host}:{port} ({err.strerror or err}); check --host and --port") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def create_app(log: VerdictLog, on_change: Callable[[], None]) -> Any:
    """The FastAPI app: the page, and next / verdict / skip / undo for one annotator at a time."""
    from fastapi import (  # deferred: the `human` extra, checked first
        Body,
        FastAPI,
        Request,
    )
    from fastapi.responses import HTMLResponse, JSONResponse

    page = resources.files("assess.human").joinpath("page.html").read_text(encoding="utf-8")
    app = FastAPI(title="blind pairwise comparison", docs_url=None, redoc_url=None, openapi_url=None)
    json_body = Body(...)  # the endpoints below take one JSON object

    def state(annotator: str, note: str = "") -> dict[str, Any]:
        pair = log.next_pair(annotator)
        done, total = log.progress(annotator)
        task = None
        if pair is not None:
            answer_a, answer_b = log.shown(annotator, pair)
            task = {"id": pair.task_id, "number": pair.index + 1, "category": pair.category,
                    "instruction": pair.instruction, "input": pair.input,
                    "answer_a": answer_a, "answer_b": answer_b}
        return {"task": task, "done": done, "total": total, "note": note}

    def name_in(payload: dict[str, Any]) -> str:
        return clean_name(payload.get("annotator"))

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, err: RequestError) -> JSONResponse:
        # "field" tells the page to ask for the name again.
        field = "annotator" if isinstance(err, NameRefused) else None
        return JSONResponse({"error": str(err), "field": field}, status_code=400)

    @app.exception_handler(OSError)
    async def not_saved(request: Request, err: OSError) -> JSONResponse:
        logger.error("could not save: %s", err)
        return JSONResponse({"error": f"not saved: {err.strerror or err} (the earlier verdicts are safe)"},
                            status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    @app.get("/api/next")
    def next_task(annotator: str = "") -> dict[str, Any]:
        return state(name_in({"annotator": annotator}))

    @app.post("/api/verdict")
    def verdict(payload: dict[str, Any] = json_body) -> dict[str, Any]:
        name = name_in(payload)
        event = log.give(name, payload.get("task"), payload.get("choice"))
        on_change()
        return state(name, f"Saved your verdict on task {event['index'] + 1}.")

    @app.post("/api/skip")
    def skip(payload: dict[str, Any] = json_body) -> dict[str, Any]:
        name = name_in(payload)
        log.skip(name, payload.get("task"))
        return state(name, "Skipped: it comes back after the others.")

    @app.post("/api/undo")
    def undo(payload: dict[str, Any] = json_body) -> dict[str, Any]:
        name = name_in(payload)
        pair = log.undo(name)
        if pair is not None:
            on_change()
        return state(name, f"Took back your verdict on task {pair.index + 1}." if pair else "Nothing to undo.")

    return app


def run(app: Any, sock: socket.socket, debug: bool) -> None:
    """Serve until Ctrl-C or SIGTERM (uvicorn stops gracefully, then re-raises the signal)."""
    import uvicorn  # deferred: the `human` extra, checked first

    config = uvicorn.Config(app, log_config=None, access_log=debug, log_level="debug" if debug else "warning")
    uvicorn.Server(config).run(sockets=[sock])
