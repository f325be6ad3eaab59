"""Masks and double review with a real Label Studio 1.23 server (session fixture in conftest.py).

A workspace of its own (project "labelloop masks") ingests the four photos; the OpenCV
pre-labeler gives ``person`` (``masks: true`` in the default labelloop.yaml) GrabCut masks, which
are pushed as brush regions, and ``review.double_review_share`` picks one task for two reviewers.
Two reviewer users then write annotations through the server's API as the editor saves them:
a mask kept, a mask edited and relabeled, and the double-review task annotated by both.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from labelloop.formats.labelstudio.brush import brush_rle_to_mask, mask_to_brush_rle
from labelloop.geometry.masks import decode_rle, encode_rle, mask_iou, rle_bbox_xyxy
from labelloop.review.live.server import LabelStudioServer
from labelloop.review.live.sync import pull_reviews, push_batch
from labelloop.review.store import review_store
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace
from support.helpers import REPO_ROOT, cli
from support.label_studio import ADMIN, login, personal_access_token, signup
from support.ls_live import photos

TITLE = "labelloop masks"
BATCH = "b1"
SECOND = ("second-reviewer@labelloop.test", "second-Passw0rd")


@pytest.fixture(scope="module")
def pushed(label_studio, tmp_path_factory):
    src = photos(tmp_path_factory.mktemp("ls-mask-photos") / "photos")
    root = label_studio.document_root / "ws-masks"
    cli(root, "init")
    cli(root, "ingest", str(src), "--batch", BATCH)
    cli(root, "run")
    ws = Workspace.at(root)
    server = LabelStudioServer(label_studio.url, label_studio.admin_token)
    summary = push_batch(ws, server, BATCH, title=TITLE, document_root=str(label_studio.document_root))
    client = label_studio.client()
    tasks = {t.data["source_path"]: t for t in client.tasks.list(project=summary["project_id"], fields="all")}
    images = {r["source_path"]: r for r in repo.all_images(ws) if r["status"] == "ok"}
    return {"ws": ws, "server": server, "summary": summary, "tasks": tasks, "images": images,
            "exported": {r["prediction_id"]: r for r in repo.all_exported(ws)}}


def _result(task) -> list[dict]:
    return [copy.deepcopy(r) for r in task.predictions[0].result]


def _brush(task) -> dict:
    (b,) = [r for r in _result(task) if r["type"] == "brushlabels"]
    return b


@pytest.mark.labelstudio
def test_the_project_has_brush_labels_and_tasks_carry_the_masks(label_studio, pushed):
    project = label_studio.client().projects.get(pushed["summary"]["project_id"])
    assert '<BrushLabels name="brush" toName="image">' in project.label_config
    ws, exported = pushed["ws"], pushed["exported"]
    sent = {t["data"]["source_path"]: t for t in json.loads((ws.review_out / BATCH / "tasks.json").read_text())}
    n_brush = 0
    for name, task in pushed["tasks"].items():
        img = pushed["images"][name]
        for got, want in zip(task.predictions[0].result, sent[name]["predictions"][0]["result"]):
            assert got["type"] == want["type"] and got["id"] == want["id"]
            if got["type"] == "brushlabels":  # the server keeps the brush RLE as sent, and it is our mask
                n_brush += 1
                assert got["value"] == want["value"] and got["value"]["brushlabels"] == ["person"]
                mask = brush_rle_to_mask(got["value"]["rle"], img["width"], img["height"])
                assert mask_iou(mask, exported[got["id"]]["mask"]) >= 0.99
    assert n_brush >= 2  # astronaut and rocket: GrabCut person masks


@pytest.mark.labelstudio
def test_double_review_tasks_take_two_annotators(label_studio, pushed):
    s = pushed["summary"]
    project = label_studio.client().projects.get(s["project_id"])
    assert project.maximum_annotations == 2 and project.overlap_cohort_percentage == 100
    queue = {q["image_id"]: q for q in repo.all_queue(pushed["ws"])}
    want = {name: queue[img["image_id"]]["reviewers_required"] or 1 for name, img in pushed["images"].items()}
    assert sorted(want.values()) == [1, 1, 1, 2]  # 10 % of 4, rounded up
    got = {t.data["source_path"]: t.overlap for t in label_studio.client().tasks.list(project=s["project_id"])}
    assert got == want and s["double_review_tasks"] == 1
    # pushing again keeps the overlaps and creates nothing
    again = push_batch(pushed["ws"], pushed["server"], BATCH, title=TITLE, document_root=str(label_studio.document_root))
    assert (again["tasks_created"], again["double_review_tasks"]) == (0, 1)


@pytest.fixture(scope="module")
def reviewed(label_studio, pushed):
    """Reviewer 1 keeps the astronaut's person mask, edits and relabels the rocket's; the
    double-review task is annotated by reviewer 1 (all accepted) and by a second reviewer
    (signed up through the organization's invite link) who deletes one region."""
    url = label_studio.url
    signup(url, login(url, *ADMIN).get(f"{url}/api/invite", timeout=30).json()["token"], *SECOND)
    second_token = personal_access_token(url, login(url, *SECOND))
    second_id = label_studio.client(second_token).users.whoami().id
    rev1, rev2 = label_studio.client(label_studio.reviewer_token), label_studio.client(second_token)
    t = pushed["tasks"]
    notes = {"second_id": second_id}
    astro = t["astronaut.png"]
    a = rev1.annotations.create(astro.id, result=_result(astro), parent_prediction=astro.predictions[0].id)
    notes["astro"] = {"annotation": a.id, "brush": _brush(astro)}
    rocket = t["rocket.jpg"]
    brush = _brush(rocket)
    img = pushed["images"]["rocket.jpg"]
    m = decode_rle(brush_rle_to_mask(brush["value"]["rle"], img["width"], img["height"])).astype(bool)
    ys, xs = np.nonzero(m)
    edited = m.copy()
    edited[:, (xs.min() + xs.max()) // 2:] = False  # the reviewer erased the right half and relabeled it
    edited_brush = copy.deepcopy(brush)
    edited_brush["value"].update(rle=mask_to_brush_rle(encode_rle(edited)), brushlabels=["cat"])
    a = rev1.annotations.create(rocket.id, result=[edited_brush], parent_prediction=rocket.predictions[0].id)
    notes["rocket"] = {"annotation": a.id, "brush": brush, "edited": edited}
    (double,) = [name for name, task in t.items()
                 if label_studio.client().tasks.get(task.id).overlap == 2]
    task = t[double]
    a1 = rev1.annotations.create(task.id, result=_result(task), parent_prediction=task.predictions[0].id)
    a2 = rev2.annotations.create(task.id, result=_result(task)[1:], parent_prediction=task.predictions[0].id)
    notes["double"] = {"name": double, "a1": a1.id, "a2": a2.id, "dropped": _result(task)[0]}
    s = pull_reviews(pushed["ws"], pushed["server"], title=TITLE)
    return notes, s


def _rows(pushed, name):
    iid = pushed["images"][name]["image_id"]
    return [h for h in review_store(pushed["ws"]).current_human_labels() if h["image_id"] == iid]


@pytest.mark.labelstudio
def test_a_kept_mask_comes_back_accepted_with_the_same_mask(label_studio, pushed, reviewed):
    notes, s = reviewed
    assert (s["reviews"], s["rejects"]) == (4, 0)
    rows = {r["region_id"]: r for r in _rows(pushed, "astronaut.png")}
    person = rows[notes["astro"]["brush"]["id"]]
    sent = pushed["exported"][person["source_prediction_id"]]
    assert (person["category"], person["action"], person["annotator"]) == (
        "person", "accepted", f"ls-user-{label_studio.reviewer_id}")
    assert mask_iou(person["mask"], sent["mask"]) >= 0.99
    assert person["bbox"] == pytest.approx(rle_bbox_xyxy(person["mask"]))


@pytest.mark.labelstudio
def test_an_edited_relabeled_mask_comes_back_corrected_with_the_new_mask(label_studio, pushed, reviewed):
    notes, _ = reviewed
    (row,) = [r for r in _rows(pushed, "rocket.jpg") if r["action"] != "deleted"]
    assert (row["category"], row["action"], row["annotator"]) == ("cat", "corrected", f"ls-user-{label_studio.reviewer_id}")
    assert row["source_prediction_id"] == notes["rocket"]["brush"]["id"]
    assert np.array_equal(decode_rle(row["mask"]).astype(bool), notes["rocket"]["edited"])
    ys, xs = np.nonzero(notes["rocket"]["edited"])
    assert row["bbox"] == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


@pytest.mark.labelstudio
def test_both_reviewers_of_the_double_review_task_arrive_and_are_kept_apart(label_studio, pushed, reviewed):
    notes, _ = reviewed
    d = notes["double"]
    iid = pushed["images"][d["name"]]["image_id"]
    store = review_store(pushed["ws"])
    reviews = {r["tool_annotation_id"]: r for r in store.reviews() if r["image_id"] == iid}
    assert set(reviews) == {str(d["a1"]), str(d["a2"])}
    assert {r["annotator"] for r in reviews.values()} == {f"ls-user-{label_studio.reviewer_id}",
                                                          f"ls-user-{notes['second_id']}"}
    by_review: dict[str, list] = {}  # every stored label (both reviews are kept, each with its own rows)
    for r in store.human_labels():
        by_review.setdefault(r["review_id"], []).append(r)
    first, second = by_review[reviews[str(d["a1"])]["review_id"]], by_review[reviews[str(d["a2"])]["review_id"]]
    assert all(r["action"] == "accepted" for r in first)
    assert {r["annotator"] for r in first} == {f"ls-user-{label_studio.reviewer_id}"}
    assert [r["source_prediction_id"] for r in second if r["action"] == "deleted"] == [d["dropped"]["id"]]
    assert {r["annotator"] for r in second} == {f"ls-user-{notes['second_id']}"}
    assert first and second and not {r["annotation_id"] for r in first} & {r["annotation_id"] for r in second}
    # the resolved labels use the most recently saved review (docs/guides/review-routing.md, double review); both stay stored
    assert store.latest_reviews()[iid]["tool_annotation_id"] == str(d["a2"])
    assert {r["review_id"] for r in _rows(pushed, d["name"])} == {reviews[str(d["a2"])]["review_id"]}


@pytest.mark.labelstudio
def test_a_webhook_event_pulls_the_edit_at_once(label_studio, pushed, reviewed):
    """The project's webhook posts to labelloop's endpoint when the reviewer saves; the endpoint
    answers at once and pulls: the edited annotation arrives as a new version."""
    from labelloop.review.live.webhook import WebhookServer

    notes, _ = reviewed
    ws, server, pid = pushed["ws"], pushed["server"], pushed["summary"]["project_id"]
    with WebhookServer(lambda: pull_reviews(ws, server, title=TITLE), secret="s3cret", project_id=pid) as hook:
        wid = server.ensure_webhook(pid, hook.url, "s3cret")
        assert server.ensure_webhook(pid, hook.url, "s3cret") == wid  # registered once
        astro = pushed["tasks"]["astronaut.png"]
        face = next(r for r in _result(astro) if r["type"] == "rectanglelabels")
        face["value"]["x"] = max(0.0, face["value"]["x"] - 3.0)
        label_studio.client(label_studio.reviewer_token).annotations.update(
            notes["astro"]["annotation"], result=[face, notes["astro"]["brush"]])
        assert hook.wait_for_pulls(1, timeout=120), (hook.events, hook.errors)
    assert hook.errors == [] and hook.events >= 1
    assert hook.results[0]["reviews"] == 1 and hook.results[0]["rejects"] == 0
    versions = [r for r in review_store(ws).reviews() if r["tool_annotation_id"] == str(notes["astro"]["annotation"])]
    assert len(versions) == 2
    (row,) = [r for r in _rows(pushed, "astronaut.png") if r["region_id"] == face["id"]]
    assert row["action"] == "corrected" and row["review_id"] == max(versions, key=lambda v: v["updated_at"])["review_id"]


@pytest.mark.labelstudio
def test_labelloop_serve_webhook_registers_and_resolves_on_an_event(label_studio, pushed, reviewed):
    """`labelloop serve-webhook` (a subprocess, as a user runs it: a background job of a script, so
    SIGINT is ignored) registers the project's webhook and runs resolve_job when the reviewer saves:
    the relabeled face arrives as a human label; SIGTERM after that pull stops it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    notes, _ = reviewed
    ws = pushed["ws"]
    root = REPO_ROOT
    env = {**os.environ, "PYTHONPATH": str(root), "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.admin_token, "LABEL_STUDIO_PROJECT_TITLE": TITLE,
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(label_studio.document_root),
           "LABELLOOP_WEBHOOK_SECRET": "webhook-secret-1"}
    proc = subprocess.Popen([sys.executable, "-c", "from pipelines.cli import main; main()", "--workspace", str(ws.root),
                             "serve-webhook", "--port", "0"], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        first = proc.stdout.readline()
        assert "posts to http://127.0.0.1:" in first and first.startswith(pushed["summary"]["source"]), first
        astro = pushed["tasks"]["astronaut.png"]
        face = next(r for r in _result(astro) if r["type"] == "rectanglelabels")
        face["value"]["rectanglelabels"] = ["cat"]
        time.sleep(1.1)  # a later updated_at than the previous version's
        label_studio.client(label_studio.reviewer_token).annotations.update(
            notes["astro"]["annotation"], result=[face, notes["astro"]["brush"]])
        pulled = proc.stdout.readline()  # "run <id> ok; ..." after the event's pull
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        out = pulled + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 0, first + out
    assert "ok; 1 new reviews, 0 rejected" in out, out
    labels, _ = repo.read_labels(ws)
    astro_id = pushed["images"]["astronaut.png"]["image_id"]
    assert ("cat", "human") in {(lab["category"], lab["origin"]) for lab in labels if lab["image_id"] == astro_id}
