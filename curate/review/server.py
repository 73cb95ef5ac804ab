"""`curate review RUN`: the review app's HTTP server (standard library only) and its JSON API.

The server binds 127.0.0.1 by default and every request must carry the run's random token (in
the URL the command prints, then in a cookie), so another user of the machine, or a page in
the browser, cannot read the run or write decisions. ``--host 0.0.0.0`` shares it on the
network, token still required. The page (static/index.html) calls the API:

    GET  /api/run                          the run: stages, counts, flags
    GET  /api/records?stage=&q=&field=&value=&offset=&limit=
    GET  /api/rejects?stage=&reason=&q=&source=&offset=&limit=
    GET  /api/clusters?stage=&offset=&limit=
    GET  /api/pii?q=&entity=&offset=&limit=
    GET  /api/rewrites?rule=&offset=&limit=
    GET  /api/charts
    GET  /api/decisions
    POST /api/decisions                    {action, record, stage, why, who, start, end, entity, retracts}

The standard library's threading server is enough for a handful of reviewers on one run, and
keeps `curate review` free of web-framework dependencies.
"""

from __future__ import annotations

import errno
import getpass
import http.cookies
import json
import secrets
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from curate.errors import CurateError
from curate.review.data import ReviewError, RunView

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "curate_review"
_INT = ("offset", "limit")


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], view: RunView, token: str, reviewer: str):
        self.view, self.token, self.reviewer = view, token, reviewer
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: the terminal shows the URL and errors only

    # -- plumbing ---------------------------------------------------------------

    def _authorised(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, came in the URL): the token in the query string or in the cookie."""
        if secrets.compare_digest(query.get("token", [""])[0], self.server.token):
            return True, True
        cookie = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        value = cookie[COOKIE].value if COOKIE in cookie else ""
        return secrets.compare_digest(value, self.server.token), False

    def _send(self, status: int, body: bytes, ctype: str, cookie: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if cookie:
            self.send_header("Set-Cookie", f"{COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, default=str).encode(), "application/json; charset=utf-8")

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        allowed, in_url = self._authorised(query)
        if not allowed:
            self._send(HTTPStatus.FORBIDDEN, b"forbidden: open the URL `curate review` printed (it holds the token)\n",
                       "text/plain; charset=utf-8")  # fmt: skip
            return
        try:
            if method == "GET" and url.path in ("/", "/index.html"):
                page = (STATIC / "index.html").read_bytes()
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8", cookie=in_url)
            elif method == "GET" and url.path.startswith("/api/"):
                self._json(HTTPStatus.OK, self._get(url.path[5:], query))
            elif method == "POST" and url.path == "/api/decisions":
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ReviewError("expected a JSON object")
                self._json(HTTPStatus.CREATED, self.server.view.decide(body, self.server.reviewer))
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"})
        except (CurateError, ValueError) as e:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})

    def _get(self, name: str, query: dict[str, list[str]]) -> Any:
        view = self.server.view
        args = {k: v[0] for k, v in query.items() if k != "token"}
        for k in _INT:
            if k in args:
                args[k] = int(args[k])
        if name == "run":
            view.reload()
            return {**view.summary(), "reviewer": self.server.reviewer}
        handlers = {
            "records": view.records,
            "rejects": view.rejects,
            "clusters": view.clusters,
            "pii": view.pii,
            "rewrites": view.rewrites,
            "charts": view.charts,
            "decisions": view.decisions,
        }
        if name not in handlers:
            raise ReviewError(f"no such API: {name}")
        try:
            return handlers[name](**args)
        except TypeError as e:
            raise ReviewError(f"bad parameters for {name}: {e}") from None

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")


def bind(view: RunView, host: str = "127.0.0.1", port: int = 8765, reviewer: str | None = None,
         tries: int = 50) -> tuple[ReviewServer, str, int | None]:  # fmt: skip
    """A server on ``port``, or the next free one: (server, URL with the token, the busy port
    it moved from, if any)."""
    token = secrets.token_urlsafe(18)
    reviewer = reviewer or getpass.getuser()
    busy = None
    for candidate in range(port, port + tries) if port else [0]:
        try:
            server = ReviewServer((host, candidate), view, token, reviewer)
            break
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            busy = busy or port
    else:
        raise CurateError(f"ports {port}-{port + tries - 1} are all in use: pass --port with a free one")
    shown = host if host not in ("0.0.0.0", "::") else socket.gethostname()
    url = f"http://{shown}:{server.server_address[1]}/?token={token}"
    return server, url, busy


def serve_in_thread(server: ReviewServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="curate-review")
    thread.start()
    return thread
