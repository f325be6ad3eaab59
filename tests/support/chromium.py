"""Headless Chromium (Debian's /usr/bin/chromium) driven over the Chrome DevTools Protocol, for
tests that look at a page as a person would: load it with a session cookie, wait for a
condition in the page, take a PNG screenshot.

Protocol: https://chromedevtools.github.io/devtools-protocol/ (Target, Page, Network, Runtime,
Emulation domains). Transport: the ``websockets`` package's synchronous client.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("LABELLOOP_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


class Chromium:
    """One headless Chromium process with a fresh profile; use as a context manager.

    Raises:
        FileNotFoundError: no Chromium at :data:`CHROMIUM` (``bash scripts/test-services.sh``
            installs Debian's package).
        TimeoutError: the browser did not open its DevTools port within 30 s.
    """

    def __init__(self, width: int = 1440, height: int = 900):
        if not Path(CHROMIUM).is_file():
            raise FileNotFoundError(f"{CHROMIUM} is missing: run `bash scripts/test-services.sh` "
                                    "(it installs Debian's chromium package)")
        self.profile = tempfile.mkdtemp(prefix="labelloop-chromium-")
        args = [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                "--remote-allow-origins=*", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise TimeoutError(f"{CHROMIUM} did not open a DevTools port (exit code {self.proc.returncode})")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10)
        self._id = 0
        self.send("Page.enable")
        self.send("Network.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        """Send one DevTools command and return its ``result`` (events in between are dropped).

        Raises:
            RuntimeError: the browser answered with an error.
        """
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.send("Network.setCookie", url=url, name=name, value=value)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str):
        """Value of a JavaScript expression in the page (``returnByValue``)."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60, interval: float = 0.5):
        """Poll ``expression`` until it is truthy; returns its value.

        Raises:
            TimeoutError: still falsy after ``timeout`` seconds (the message has the page text).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        text = self.evaluate("document.body ? document.body.innerText.slice(0, 500) : ''")
        raise TimeoutError(f"page never satisfied {expression!r} in {timeout} s; page text: {text!r}")

    def screenshot(self, path: str | os.PathLike) -> bytes:
        """PNG of the viewport, written to ``path``; returns the bytes."""
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
        return data

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
