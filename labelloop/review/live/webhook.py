"""A webhook endpoint for Label Studio: annotation events trigger a pull at once.

Label Studio POSTs a JSON event to a project's webhooks when annotations change (docs
"Webhooks"; body ``{"action": "ANNOTATION_CREATED", "project": {"id": ...}, "annotation": ...}``,
with the webhook's own headers). It waits only ``WEBHOOK_TIMEOUT`` (1 s by default) and never
retries, so :class:`WebhookServer` answers at once (202) and pulls in a worker thread: every
accepted event of our project marks the project dirty, and the worker runs
:func:`labelloop.review.live.sync.pull_reviews` until no event is pending (a burst of events
gives one or two pulls). The pull is the same idempotent import the sensor's runs do, so an
event that arrives twice, late, or together with a sensor tick changes nothing; the sensor
still resolves labels afterwards (the tasks' ``updated_at`` moved).

Authentication: the webhook is registered with the header ``X-Labelloop-Token: <secret>``
(:meth:`labelloop.review.live.server.LabelStudioServer.ensure_webhook`); a request without the
right token is refused with 401 and nothing happens. Label Studio refuses webhook URLs on
private addresses unless ``SSRF_PROTECTION_ENABLED=false`` (its settings).
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

TOKEN_HEADER = "X-Labelloop-Token"
PATH = "/label-studio/webhook"
#: Label Studio webhook actions that trigger a pull.
PULL_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
#: Largest event body the endpoint reads; a larger one is refused (413).
MAX_BODY_BYTES = 32 * 2**20
READ_TIMEOUT_S = 10  # per socket read of a request


class WebhookRefused(Exception):
    """A request that is not an accepted event: ``status`` (HTTP) and the reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def check_event(body: bytes, headers: Mapping[str, str], secret: str, project_id: int | None) -> dict | None:
    """Validate one webhook request.

    Returns ``{"action", "project_id"}`` for an event that should trigger a pull
    (:data:`PULL_ACTIONS` of ``project_id``, or of any project when it is None); None for an
    authentic event to ignore (another action or project).

    Raises:
        WebhookRefused: 401 without the right ``X-Labelloop-Token``; 413 over
            :data:`MAX_BODY_BYTES`; 400 for a body that is not a JSON object with a string
            ``action``.
    """
    token = next((v for k, v in headers.items() if k.lower() == TOKEN_HEADER.lower()), "")
    if not secret or not hmac.compare_digest(str(token).encode(), secret.encode()):
        raise WebhookRefused(401, f"missing or wrong {TOKEN_HEADER} header")
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRefused(413, f"body of {len(body)} bytes is over {MAX_BODY_BYTES}")
    try:
        event = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nesting too deep to parse
        raise WebhookRefused(400, "body is not UTF-8 JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("action"), str):
        raise WebhookRefused(400, "body is not a Label Studio event (a JSON object with an 'action')")
    project = event.get("project")
    pid = project.get("id") if isinstance(project, dict) else project
    if event["action"] not in PULL_ACTIONS or (project_id is not None and pid != project_id):
        return None
    return {"action": event["action"], "project_id": pid}


class _Server(ThreadingHTTPServer):
    """socketserver's listen backlog is 5: a burst of saves (one POST each) overflowed it and the
    kernel reset connections; take the system's maximum (``socket.SOMAXCONN``) instead."""

    request_queue_size = socket.SOMAXCONN


class WebhookServer:
    """HTTP endpoint ``POST /label-studio/webhook`` on ``host:port`` (port 0: a free one) that
    runs ``pull()`` in one worker thread after each accepted event.

    Args:
        pull: what an event triggers (e.g. ``lambda: pull_reviews(ws, server, title=...)``); its
            exceptions are kept in ``errors`` and do not stop the worker.
        secret: the expected ``X-Labelloop-Token``.
        project_id: the project whose events count (None: any).
        read_timeout_s: seconds one socket read of a request may stall (a slow or silent client
            gets 408 and its connection closed, instead of holding a thread forever).

    Requests are answered 411 / 400 for a missing or non-numeric ``Content-Length`` or a body
    shorter than it, 413 over :data:`MAX_BODY_BYTES`, 401 (body unread) without the token.

    Use as a context manager; ``pulls`` counts finished pulls, ``events`` accepted events.
    """

    def __init__(self, pull: Callable[[], object], secret: str, project_id: int | None = None,
                 host: str = "127.0.0.1", port: int = 0, read_timeout_s: float = READ_TIMEOUT_S):
        self.pull, self.secret, self.project_id = pull, secret, project_id
        self.events = self.pulls = 0
        self.results: list[object] = []
        self.errors: list[str] = []
        self._pending = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = read_timeout_s  # socket timeout: a client that stalls cannot hold a thread forever

            def do_POST(self):  # noqa: N802 - http.server's name
                if self.path.split("?", 1)[0] != PATH:
                    return self._answer(404, {"error": f"POST to {PATH}"})
                length = (self.headers.get("Content-Length") or "").strip()
                if not (length.isascii() and length.isdigit()):  # "²".isdigit() is True
                    return self._answer(411 if not length else 400,
                                        {"error": f"Content-Length {length!r} is not a byte count"})
                n = int(length)
                if n > MAX_BODY_BYTES:
                    return self._answer(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                try:  # the token first: an unauthenticated client's body is never read
                    check_event(b"{}", dict(self.headers.items()), outer.secret, outer.project_id)
                except WebhookRefused as exc:
                    if exc.status == 401:
                        return self._answer(401, {"error": str(exc)})
                try:
                    body = self.rfile.read(n)
                except (TimeoutError, OSError):
                    return self._answer(408, {"error": f"body not received within {read_timeout_s} s"})
                if len(body) < n:
                    return self._answer(400, {"error": f"body ended after {len(body)} of {n} bytes"})
                try:
                    event = check_event(body, dict(self.headers.items()), outer.secret, outer.project_id)
                except WebhookRefused as exc:
                    return self._answer(exc.status, {"error": str(exc)})
                if event is None:
                    return self._answer(200, {"ignored": True})
                with outer._idle:
                    outer.events += 1
                outer._pending.set()
                return self._answer(202, {"accepted": event["action"]})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.close_connection = True  # an unread or partial body must not be parsed as a request
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client left: nothing to answer
                    pass

            def log_message(self, *args) -> None:  # quiet: Label Studio posts on every save
                pass

        self.httpd = _Server((host, port), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}{PATH}"
        self._threads = [threading.Thread(target=self.httpd.serve_forever, daemon=True),
                         threading.Thread(target=self._work, daemon=True)]

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._pending.wait(0.2):
                continue
            self._pending.clear()
            try:
                result = self.pull()
                self.results.append(result)
            except Exception as exc:  # noqa: BLE001 - kept for the caller; the endpoint keeps serving
                self.errors.append(f"{type(exc).__name__}: {exc}")
            with self._idle:
                self.pulls += 1
                self._idle.notify_all()

    def wait_for_pulls(self, n: int, timeout: float) -> bool:
        """Block until ``n`` pulls have finished (True) or ``timeout`` seconds passed (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self.pulls >= n, timeout)

    def __enter__(self) -> "WebhookServer":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for t in self._threads:
            t.join(timeout=30)
