"""The QA report page rendered by a real headless Chromium (DevTools protocol): every plot and
gallery image decodes and is laid out with a size, and the PR-curve plot is not blank on screen."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelloop.qa.agreement import pairwise_agreement
from labelloop.qa.gold_eval import gold_gates, reviewer_vs_gold
from labelloop.qa.metrics import build_qa_report
from labelloop.qa.model_eval import model_vs_human
from labelloop.qa.report.html import render_html
from labelloop.qa.statistics import box_sizes, class_drift, objects_per_image
from support.qa_helpers import gold_photos

pytestmark = pytest.mark.browser
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    """A headless Chromium with the DevTools protocol on a free loopback port, once per session."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium not found: scripts/test-services.sh installs it (apt-get install -y chromium)"
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
                             "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    deadline = time.time() + 60
    while not (port_file.is_file() and port_file.read_text().strip()):
        assert proc.poll() is None, f"chromium exited with {proc.returncode}"
        assert time.time() < deadline, "chromium did not open its DevTools port within 60 s"
        time.sleep(0.2)
    port = int(port_file.read_text().splitlines()[0])
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


class Page:
    """Minimal DevTools-protocol client over the page target's websocket."""

    def __init__(self, port: int):
        from websockets.sync.client import connect

        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self.ws = connect(url, max_size=64 * 2**20, open_timeout=10)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.n:
                assert "error" not in msg, msg
                return msg["result"]

    def eval(self, expr: str):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"]["value"]


def _report_page(dest: Path) -> Path:
    """A QA report of the hand-made labels as gold, two reviewers and a shifted model, with a gallery."""
    photos = [p for p in gold_photos() if p["boxes"]]
    gold, truths, preds, sizes, anns = [], [], [], {}, []
    for p in photos:
        sizes[p["name"]] = (p["w"], p["h"])
        rows = [{"image_id": p["name"], "category": c, "bbox": list(b)} for c, b in p["boxes"]]
        gold += rows
        truths += rows
        preds += [dict(r, bbox=[v + 8 for v in r["bbox"]], score=0.6 + 0.1 * k) for k, r in enumerate(rows)]
        anns.append({"annotator": "ls-user-3", "image_id": p["name"], "review_id": "a", "labels": rows})
        anns.append({"annotator": "ls-user-5", "image_id": p["name"], "review_id": "b",
                     "labels": [dict(r, category="cat") for r in rows[:1]] + rows[1:]})
    report = build_qa_report(labels=[dict(r, label_id=str(k), origin="human", route="human_review")
                                     for k, r in enumerate(truths)], labels_sha256="0" * 64, policy_id="policy-x",
                             review_queue=[], reviews=[], human_labels=[], predictions=preds, images=sizes,
                             categories=["person", "face", "cat"])
    res = reviewer_vs_gold(gold, list(sizes), anns)
    report["gates"] += gold_gates(res)
    report["gold"] = res | {"sets": ["hand"]}
    report["agreement"] = pairwise_agreement(anns)
    report["model_vs_human"] = model_vs_human(truths, preds, sizes, ["person", "face", "cat"])
    report["model_confusion"] = {"person": {"person": 3}, "face": {"face": 3}, "missing": {"cat": 1}}
    report["label_stats"] = {"box_sizes": box_sizes(truths), "objects_per_image": objects_per_image(truths, list(sizes)),
                             "drift": class_drift({"person": 3, "face": 3, "cat": 1}, {"person": 1}, "dataset-v1")}
    from labelloop.images.samples import bundled_photos

    by_name = {p.name: p for p in bundled_photos()}
    name = photos[0]["name"]
    gallery = [(Image.open(by_name[name]), {"image_id": name, "title": "ls-user-5 vs ls-user-3",
                                            "set_a": {"name": "ls-user-3", "boxes": anns[0]["labels"]},
                                            "set_b": {"name": "ls-user-5", "boxes": anns[1]["labels"]}})]
    dest.write_text(render_html(report, None, gallery), encoding="utf-8")
    return dest


def test_report_plots_render_in_headless_chromium(chromium, tmp_path):
    html = _report_page(tmp_path / "qa_report.html")
    page = Page(chromium)
    page.call("Emulation.setDeviceMetricsOverride", width=1200, height=900, deviceScaleFactor=1, mobile=False)
    page.call("Page.navigate", url=html.as_uri())
    deadline = time.time() + 30
    while page.eval("document.readyState") != "complete" or not page.eval(
            "Array.from(document.images).every(i => i.complete)"):
        assert time.time() < deadline, "the report did not finish loading"
        time.sleep(0.2)
    imgs = page.eval("Array.from(document.images).map(i => ({alt: i.alt, cls: i.className, w: i.naturalWidth, "
                     "h: i.naturalHeight, rw: i.getBoundingClientRect().width, rh: i.getBoundingClientRect().height}))")
    alts = [i["alt"] for i in imgs]
    for wanted in ("precision-recall curves", "confusion matrices", "box sizes and objects per image",
                   "images per route and labels per class", "ls-user-5 vs ls-user-3"):
        assert wanted in alts, alts
    for i in imgs:
        assert i["w"] > 100 and i["h"] > 100 and i["rw"] > 100 and i["rh"] > 50, i  # decoded and laid out
    assert "Cohen's kappa" in page.eval("document.body.innerText")
    # the PR plot as the browser paints it: scroll to it, screenshot its box, expect drawn curves
    rect = page.eval("(() => { const i = Array.from(document.images).find(i => i.alt == 'precision-recall curves');"
                     " i.scrollIntoView(); const r = i.getBoundingClientRect();"
                     " return {x: r.x + window.scrollX, y: r.y + window.scrollY, w: r.width, h: r.height}; })()")
    shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                     clip={"x": rect["x"], "y": rect["y"], "width": rect["w"], "height": rect["h"], "scale": 1})
    px = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")).astype(int)
    assert px.shape[0] > 100 and px.std() > 20  # not a blank box
    blue = ((px[..., 2] > 120) & (px[..., 0] < 80)).sum()  # the first class's curve (#0072b2)
    assert blue > 100
