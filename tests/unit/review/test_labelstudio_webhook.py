"""The Label Studio webhook endpoint (labelloop.review.live.webhook) over real HTTP on loopback;
the live round trip with a Label Studio server is in test_labelstudio_live_masks.py."""

from __future__ import annotations

import json

import pytest
import requests

from labelloop.review.live.webhook import TOKEN_HEADER, WebhookRefused, WebhookServer, check_event

EVENT = {"action": "ANNOTATION_UPDATED", "project": {"id": 3}, "annotation": {"id": 9}}


def _body(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("body, headers, status", [
    (_body(EVENT), {}, 401),
    (_body(EVENT), {TOKEN_HEADER: "wrong"}, 401),
    (b"\xff\xfe", {TOKEN_HEADER: "t"}, 400),
    (b"[1, 2]", {TOKEN_HEADER: "t"}, 400),
    (b"[" * 100_000 + b"]" * 100_000, {TOKEN_HEADER: "t"}, 400),  # was: RecursionError, no answer
    (_body({"project": 3}), {TOKEN_HEADER: "t"}, 400),
])
def test_refused_requests(body, headers, status):
    with pytest.raises(WebhookRefused) as exc:
        check_event(body, headers, "t", 3)
    assert exc.value.status == status


def test_accepted_and_ignored_events():
    h = {TOKEN_HEADER.lower(): "t"}  # header names are case-insensitive
    assert check_event(_body(EVENT), h, "t", 3) == {"action": "ANNOTATION_UPDATED", "project_id": 3}
    assert check_event(_body(EVENT), h, "t", None)["project_id"] == 3
    assert check_event(_body(EVENT | {"project": {"id": 4}}), h, "t", 3) is None  # another project
    assert check_event(_body(EVENT | {"action": "PROJECT_UPDATED"}), h, "t", 3) is None


def test_the_endpoint_answers_at_once_and_pulls_in_its_worker():
    calls = []

    def pull():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("server down")
        return {"reviews": len(calls)}

    with WebhookServer(pull, secret="t", project_id=3) as hook:
        post = lambda body, **h: requests.post(hook.url, data=body, headers=h, timeout=5)  # noqa: E731
        assert post(_body(EVENT)).status_code == 401
        assert post(_body(EVENT), **{TOKEN_HEADER: "t"}).status_code == 202
        assert hook.wait_for_pulls(1, timeout=10)
        assert post(_body(EVENT | {"project": {"id": 7}}), **{TOKEN_HEADER: "t"}).json() == {"ignored": True}
        assert post(_body(EVENT), **{TOKEN_HEADER: "t"}).status_code == 202
        assert hook.wait_for_pulls(2, timeout=10)
        assert post(_body(EVENT), **{TOKEN_HEADER: "t"}).status_code == 202
        assert hook.wait_for_pulls(3, timeout=10)  # a failed pull does not stop the worker
        assert requests.post(hook.url.replace("/webhook", "/other"), data=b"{}", timeout=5).status_code == 404
    assert hook.results == [{"reviews": 1}, {"reviews": 3}]
    assert hook.errors == ["RuntimeError: server down"] and hook.events == 3


def _raw(port: int, request: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes to the endpoint and return its status line (b'' when it just hung up)."""
    import socket

    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(wait)
        s.sendall(request)
        return s.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("head, body, status", [
    (b"Content-Length: abc\r\n", b"{}", b"400"),  # was: a traceback and a dropped connection
    (b"Content-Length: -1\r\n", b"{}", b"400"),  # was: read until the client closes (unbounded)
    (b"Content-Length: \xb2\r\n", b"{}", b"400"),  # superscript two: str.isdigit() but not int()
    (b"", b"{}", b"411"),
    (b"Content-Length: 100\r\n", b"{}", b"408"),  # a stalled client: was a thread held forever
    (b"Content-Length: 1000000\r\nX-Labelloop-Token: wrong\r\n", b"{}", b"401"),  # refused before the body
])
def test_malformed_or_slow_requests_get_an_answer_and_the_endpoint_keeps_serving(head, body, status):
    with WebhookServer(lambda: None, secret="t", project_id=3, read_timeout_s=0.5) as hook:
        port = hook.httpd.server_address[1]
        tok = b"" if b"Token" in head else b"X-Labelloop-Token: t\r\n"
        line = _raw(port, b"POST /label-studio/webhook HTTP/1.1\r\n" + tok + head + b"\r\n" + body)
        assert line.split()[1] == status, line
        assert requests.post(hook.url, data=_body(EVENT), headers={TOKEN_HEADER: "t"}, timeout=5).status_code == 202
        assert hook.wait_for_pulls(1, timeout=10)
    assert hook.errors == []


def test_a_burst_of_events_never_runs_pulls_concurrently():
    import threading
    import time

    running, overlap = [0], []

    def pull():
        running[0] += 1
        overlap.append(running[0])
        time.sleep(0.05)
        running[0] -= 1

    with WebhookServer(pull, secret="t", project_id=3) as hook:
        def post():
            requests.post(hook.url, data=_body(EVENT), headers={TOKEN_HEADER: "t"}, timeout=5)

        threads = [threading.Thread(target=post) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert hook.events == 100  # none reset: the listen backlog is SOMAXCONN, not 5
        assert hook.wait_for_pulls(1, timeout=10)
        time.sleep(0.5)
    assert max(overlap) == 1 and 1 <= hook.pulls < 100


def test_serve_webhook_loop_survives_a_run_that_raises():
    """`labelloop serve-webhook`'s loop: a resolve_job that raises (was: the server exited) is
    reported and the next event runs again; runs never overlap."""
    import threading

    import pipelines.cli  # noqa: F401 - review_cli is imported through it (circular otherwise)
    from pipelines.cli.review import pull_loop

    due, lines, calls = threading.Event(), [], []

    def run_once():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("labelloop.yaml: broken")
        return "run ok"

    with WebhookServer(due.set, secret="t", project_id=3) as hook:
        worker = threading.Thread(target=lambda: lines.append(pull_loop(due, run_once, 2, lines.append)))
        worker.start()
        assert requests.post(hook.url, data=_body(EVENT), headers={TOKEN_HEADER: "t"}, timeout=5).status_code == 202
        assert hook.wait_for_pulls(1, timeout=10)
        for _ in range(50):  # the first run has failed before the second event
            if lines:
                break
            threading.Event().wait(0.1)
        assert requests.post(hook.url, data=_body(EVENT), headers={TOKEN_HEADER: "t"}, timeout=5).status_code == 202
        worker.join(timeout=20)
    assert lines == ["event: run failed before it started: RuntimeError: labelloop.yaml: broken", "event: run ok", 2]
