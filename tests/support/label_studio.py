"""A real Label Studio 1.23 server on loopback for the live-server tests (the session fixture
:func:`label_studio`, registered in ``tests/conftest.py``).

Label Studio runs from its own virtualenv (``.venv-labelstudio``, made by
``scripts/test-services.sh``; its pins clash with ours), on SQLite, with its data in a fresh
temporary folder, started once per test session (about a minute) and stopped at the end.
Tokens are Label Studio's personal access tokens (JWT refresh tokens), created the way a user
does in the web UI: log in, then ``POST /api/token/``. A second user, the reviewer, signs up
through the organization's invite link and gets a token of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.helpers import REPO_ROOT, free_port

LS_VENV = Path(os.environ.get("LABELLOOP_LABEL_STUDIO_VENV", REPO_ROOT / ".venv-labelstudio"))
ADMIN = ("admin@labelloop.test", "admin-Passw0rd")
REVIEWER = ("reviewer@labelloop.test", "reviewer-Passw0rd")
START_TIMEOUT_S = 300


@dataclass
class LabelStudioInstance:
    """A running Label Studio server and its two users."""

    url: str
    document_root: Path  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: workspaces of the tests live below it
    log: Path
    admin_token: str
    admin_id: int
    admin_session: str  # the admin's Django session cookie, for the browser
    reviewer_token: str
    reviewer_id: int

    def client(self, token: str | None = None):
        """An SDK client as the admin (default) or with ``token``."""
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.url, api_key=token or self.admin_token)


def log_tail(path: Path, n: int = 3000) -> str:
    """The last ``n`` characters of a log file ("" when it cannot be read)."""
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def login(url: str, email: str, password: str):
    """A requests session logged in through Label Studio's login form."""
    import requests

    s = requests.Session()
    s.get(f"{url}/user/login/", timeout=30)
    r = s.post(f"{url}/user/login/", data={"email": email, "password": password,
                                           "csrfmiddlewaretoken": s.cookies["csrftoken"]},
               headers={"Referer": f"{url}/user/login/"}, allow_redirects=False, timeout=30)
    assert r.status_code == 302, f"login of {email} failed: HTTP {r.status_code} {r.text[:300]}"
    return s


def personal_access_token(url: str, session) -> str:
    """Create a personal access token as the logged-in ``session`` (``POST /api/token/``)."""
    r = session.post(f"{url}/api/token/", headers={"X-CSRFToken": session.cookies["csrftoken"],
                                                  "Referer": f"{url}/"}, timeout=30)
    assert r.status_code == 201, f"creating a personal access token failed: HTTP {r.status_code} {r.text[:300]}"
    return r.json()["token"]


def signup(url: str, invite_token: str, email: str, password: str) -> None:
    """Sign a new user up through the organization's invite link."""
    import requests

    s = requests.Session()
    s.get(f"{url}/user/signup/", timeout=30)
    r = s.post(f"{url}/user/signup/?token={invite_token}",
               data={"email": email, "password": password, "csrfmiddlewaretoken": s.cookies["csrftoken"]},
               headers={"Referer": f"{url}/user/signup/"}, allow_redirects=False, timeout=30)
    assert r.status_code == 302, f"sign-up of {email} failed: HTTP {r.status_code} {r.text[:300]}"


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> LabelStudioInstance:
    """Start Label Studio 1.23 on 127.0.0.1 (once per session) and make its admin and reviewer."""
    exe = LS_VENV / "bin" / "label-studio"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: run `bash scripts/test-services.sh` (it makes .venv-labelstudio)")
    base = tmp_path_factory.mktemp("label-studio")
    data, docroot = base / "data", base / "files"
    data.mkdir()
    docroot.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(docroot),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LATEST_VERSION_CHECK": "false",  # no call to PyPI at start
        "SSRF_PROTECTION_ENABLED": "false",  # webhooks to the test's endpoint on 127.0.0.1
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
    })
    log = base / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             "--username", ADMIN[0], "--password", ADMIN[1], "--log-level", "WARNING"],
            cwd=base, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        import requests

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Label Studio exited with code {proc.returncode} at start; log:\n{log_tail(log)}")
            try:
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Label Studio did not answer /health within {START_TIMEOUT_S} s; log:\n{log_tail(log)}")
            time.sleep(1)
        admin = login(url, *ADMIN)
        admin_token = personal_access_token(url, admin)
        invite = admin.get(f"{url}/api/invite", timeout=30).json()["token"]
        signup(url, invite, *REVIEWER)
        reviewer_token = personal_access_token(url, login(url, *REVIEWER))
        inst = LabelStudioInstance(url=url, document_root=docroot, log=log, admin_token=admin_token, admin_id=0,
                                   admin_session=admin.cookies["sessionid"], reviewer_token=reviewer_token,
                                   reviewer_id=0)
        inst.admin_id = inst.client().users.whoami().id
        inst.reviewer_id = inst.client(reviewer_token).users.whoami().id
        yield inst
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

