"""The review round trip with a real Label Studio 1.23 server (session fixture in conftest.py).

A workspace under the server's document root ingests four real photos, pre-labels and routes
them, and `labelloop push-review` sends the batch. A reviewer (a second Label Studio user)
then works through the server's API as the web UI does: accepts a prediction unchanged, moves a
box, relabels one, deletes one, adds one, skips a task; a hostile annotation is written too.
`labelloop pull-review` brings it back, and every action must arrive with the right geometry,
class, action type and annotator. Headless Chromium takes the docs' screenshot (docs/label-studio-task.png) of a task
with its pre-annotations.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from labelloop.formats.labelstudio import parse_export
from labelloop.geometry.boxes import iou
from labelloop.geometry.masks import mask_iou, rle_bbox_xyxy
from labelloop.review.live.server import LabelStudioServer, LabelStudioServerError, config_labels, same_label_config
from labelloop.review.live.sync import pull_reviews, push_batch
from labelloop.review.store import review_store
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace, WorkspaceError
from support.helpers import REPO_ROOT, cli
from support.ls_live import Live, human, photos, px, region_id, regions, sensor_context, server_env

ROOT = REPO_ROOT
SCREENSHOT = ROOT / "docs" / "label-studio-task.png"
BATCH = "b1"


@pytest.fixture(scope="module")
def live(label_studio, tmp_path_factory):
    """The workspace, pre-labeled by the file route, then pushed with `labelloop push-review`
    (environment: LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)."""
    src = photos(tmp_path_factory.mktemp("ls-photos") / "photos")
    wsroot = label_studio.document_root / "ws"
    cli(wsroot, "init")
    cli(wsroot, "ingest", str(src), "--batch", BATCH)
    cli(wsroot, "run")
    with server_env(label_studio):
        out = cli(wsroot, "push-review").output
    ws = Workspace.at(wsroot)
    title = f"labelloop {ws.config().project}"
    client = label_studio.client()
    (project,) = [p for p in client.projects.list(title=title) if p.title == title]
    tasks = {t.data["source_path"]: {"id": t.id, "data": t.data,
                                     "predictions": [p.model_dump(mode="json") for p in t.predictions or []]}
             for t in client.tasks.list(project=project.id, fields="all")}
    images = {r["source_path"]: r for r in repo.all_images(ws) if r["status"] == "ok"}
    exported = {r["prediction_id"]: r for r in repo.all_exported(ws)}
    host = f"127.0.0.1:{label_studio.url.rsplit(':', 1)[1]}"
    return Live(ws=ws, ls=label_studio, push_output=out, project_id=project.id,
                source=f"label-studio/{host}/project-{project.id}", title=title, tasks=tasks, images=images,
                exported=exported)


# --------------------------------------------------------------------------- push


@pytest.mark.labelstudio
def test_push_creates_the_project_with_our_config_and_tasks_with_predictions(live):
    ws = live.ws
    assert f"{live.source}: 4 created, 0 already there, 0 predictions added, 1 tasks for two reviewers" in live.push_output
    project = live.ls.client().projects.get(live.project_id)
    config = (ws.review_out / BATCH / "label_config.xml").read_text(encoding="utf-8")
    assert same_label_config(project.label_config, config)
    assert {v for _, v in config_labels(project.label_config)} == {"person", "face", "cat"}
    sent = {t["data"]["source_path"]: t for t in json.loads((ws.review_out / BATCH / "tasks.json").read_text())}
    assert set(live.tasks) == set(sent) == {"astronaut.png", "coins.png", "rocket.jpg", "grace_hopper.jpg"}
    model_versions = set()
    for name, task in live.tasks.items():
        assert task["data"]["image_id"] == live.images[name]["image_id"]
        assert task["data"]["image"] == f"/data/local-files/?d=ws/inbox/{BATCH}/{name}"  # document root is ws/..
        (pred,) = task["predictions"]
        want = sent[name]["predictions"][0]
        assert pred["model_version"] == want["model_version"]
        assert pred["score"] == pytest.approx(want["score"])
        assert [r["id"] for r in pred["result"]] == [r["id"] for r in want["result"]]
        for got, exp in zip(pred["result"], want["result"]):
            if exp["type"] == "brushlabels":  # a mask: the server keeps the brush RLE as sent
                assert got["value"] == exp["value"]
                continue
            assert got["value"]["rectanglelabels"] == exp["value"]["rectanglelabels"]
            for k in ("x", "y", "width", "height"):
                assert got["value"][k] == pytest.approx(exp["value"][k], abs=1e-9)
        model_versions.add(pred["model_version"])
    assert project.model_version in model_versions
    n_preds = sum(len(t["predictions"][0]["result"]) for t in live.tasks.values())
    assert n_preds == len(live.exported) >= 6


@pytest.mark.labelstudio
def test_the_project_instructions_are_the_guidelines_of_the_export(live):
    """push-review sets the export's guidelines.md as the project's expert_instruction (read back
    through label-studio-sdk), and every task's data carries their sha256."""
    sha = hashlib.sha256((live.ws.review_out / BATCH / "guidelines.md").read_bytes()).hexdigest()
    assert sha == hashlib.sha256((live.ws.root / "guidelines.md").read_bytes()).hexdigest()
    project = live.ls.client().projects.get(live.project_id)
    assert project.show_instruction is True
    assert "<h1>Labeling guidelines: " in project.expert_instruction
    assert project.expert_instruction.rstrip().endswith(f"labelloop guidelines sha256 {sha}</small></p>")
    assert {t["data"]["guidelines_sha256"] for t in live.tasks.values()} == {sha}


@pytest.mark.labelstudio
def test_the_server_serves_our_image_bytes(live):
    import hashlib

    import requests

    task = live.tasks["astronaut.png"]
    r = requests.get(live.ls.url + task["data"]["image"], cookies={"sessionid": live.ls.admin_session}, timeout=30)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == task["data"]["image_id"]


@pytest.mark.labelstudio
def test_pushing_again_creates_nothing(live):
    with server_env(live.ls):
        out = cli(live.ws.root, "push-review", "--batch", BATCH).output
    assert f"{live.source}: 0 created, 4 already there, 0 predictions added" in out
    assert len(list(live.ls.client().tasks.list(project=live.project_id, fields="task_only"))) == 4


@pytest.fixture(scope="module")
def screenshot(live, tmp_path_factory):
    """The astronaut task opened in Label Studio's web UI by headless Chromium, before anyone
    reviewed it: ``(png bytes, region list text, path)``. Written to docs/ when that file is
    missing or LABELLOOP_UPDATE_DOCS=1, else to a temporary folder."""
    from support.chromium import Chromium

    task = live.tasks["astronaut.png"]
    update = os.environ.get("LABELLOOP_UPDATE_DOCS") == "1" or not SCREENSHOT.exists()
    path = SCREENSHOT if update else tmp_path_factory.mktemp("shot") / SCREENSHOT.name
    with Chromium(width=1440, height=900) as browser:
        browser.set_cookie(live.ls.url, "sessionid", live.ls.admin_session)
        browser.goto(f"{live.ls.url}/projects/{live.project_id}/data?task={task['id']}")
        browser.wait_for("Array.from(document.images).some(i => i.src.includes('local-files') && i.complete "
                         "&& i.naturalWidth === 512)", timeout=90)
        scores = [f"{r['score']:.2f}" for r in task["predictions"][0]["result"]]  # as the region list shows them
        text = browser.wait_for("(() => { const t = document.body.innerText; return t.includes('Regions') && "
                                f"{json.dumps(scores)}.every(s => t.includes(s)) ? t : ''; }})()", timeout=60)
        time.sleep(1.5)  # the canvas draws the boxes after the image decodes
        png = browser.screenshot(path)
    return png, text, path


@pytest.mark.labelstudio
def test_screenshot_of_the_task_shows_the_pre_annotations(live, screenshot):
    import io

    import numpy as np
    from PIL import Image

    png, text, path = screenshot
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (1440, 900)
    assert path.is_file() and SCREENSHOT.is_file()
    # the region list shows each prediction with its class and model score
    scores = {(r["value"].get("rectanglelabels") or r["value"]["brushlabels"])[0]: r["score"]
              for r in live.tasks["astronaut.png"]["predictions"][0]["result"]}
    for cat, score in scores.items():
        assert cat in text and f"{score:.2f}" in text
    # the photo is drawn: the labeling area is not a blank page
    area = np.asarray(img.convert("L"), dtype=float)[120:780, 250:950]
    assert area.std() > 30


# --------------------------------------------------------------------------- review, pull


@pytest.fixture(scope="module")
def reviewed(live, screenshot):
    """The reviewer's work, written through the API as Label Studio's editor saves it (regions
    copied from the prediction keep their ids), then `labelloop pull-review`."""
    rev = live.ls.client(live.ls.reviewer_token)
    t = live.tasks
    astro, coins, grace = regions(t["astronaut.png"]), regions(t["coins.png"]), regions(t["grace_hopper.jpg"])
    assert "face" in astro and "person" in astro, astro
    assert len(coins.get("face", [])) >= 2, coins
    assert "face" in grace, grace
    notes = {}
    # astronaut: the person's mask (a brush region: person has masks) accepted unchanged, the face
    # box moved sideways by 5 % of the width
    face, person = astro["face"][0], astro["person"][0]
    assert person["type"] == "brushlabels" and face["type"] == "rectanglelabels"
    moved = json.loads(json.dumps(face))
    dx = 5.0 if moved["value"]["x"] + moved["value"]["width"] + 5 <= 100 else -5.0
    moved["value"]["x"] += dx
    a = rev.annotations.create(t["astronaut.png"]["id"], result=[moved, person], lead_time=12.5,
                               parent_prediction=t["astronaut.png"]["predictions"][0]["id"])
    notes["astronaut"] = {"annotation": a.id, "face": face, "person": person, "moved": moved}
    # coins: the surest face relabeled cat (same box), the next face deleted
    keep, drop = coins["face"][0], coins["face"][1]
    relabeled = json.loads(json.dumps(keep))
    relabeled["value"]["rectanglelabels"] = ["cat"]
    a = rev.annotations.create(t["coins.png"]["id"], result=[relabeled], lead_time=8.0,
                               parent_prediction=t["coins.png"]["predictions"][0]["id"])
    notes["coins"] = {"annotation": a.id, "relabeled": keep, "deleted": drop}
    # grace_hopper: face accepted, a person box added
    added = {"id": region_id(), "from_name": "label", "to_name": "image", "type": "rectanglelabels",
             "original_width": live.images["grace_hopper.jpg"]["width"],
             "original_height": live.images["grace_hopper.jpg"]["height"], "image_rotation": 0,
             "value": {"x": 10.0, "y": 20.0, "width": 60.0, "height": 75.0, "rotation": 0,
                       "rectanglelabels": ["person"]}}
    a = rev.annotations.create(t["grace_hopper.jpg"]["id"], result=[grace["face"][0], added], lead_time=20.0,
                               parent_prediction=t["grace_hopper.jpg"]["predictions"][0]["id"])
    notes["grace"] = {"annotation": a.id, "face": grace["face"][0], "added": added}
    # rocket: skipped by the reviewer; a hostile annotation by the admin (unknown class, box out of the image)
    a = rev.annotations.create(t["rocket.jpg"]["id"], result=[], was_cancelled=True)
    notes["rocket"] = {"annotation": a.id}
    bad = {"id": "hostile01", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
           "original_width": live.images["rocket.jpg"]["width"], "original_height": live.images["rocket.jpg"]["height"],
           "value": {"x": 150.0, "y": 10.0, "width": -20.0, "height": 30.0, "rotation": 0, "rectanglelabels": ["dog"]}}
    a = live.ls.client().annotations.create(t["rocket.jpg"]["id"], result=[bad])
    notes["hostile"] = {"annotation": a.id}
    live.notes.update(notes)
    with server_env(live.ls):
        out = cli(live.ws.root, "pull-review").output
    return out


@pytest.mark.labelstudio
def test_pull_reports_reviews_and_the_rejected_annotation(live, reviewed):
    assert f"{live.source}: 4 tasks read, 4 new reviews, 0 already imported, 1 rejected" in reviewed
    (rej,) = [r for r in review_store(live.ws).rejects() if r["item"].endswith(f"annotation {live.notes['hostile']['annotation']}")]
    assert rej["item"] == f"task {live.tasks['rocket.jpg']['id']} annotation {live.notes['hostile']['annotation']}"
    assert "hostile01" in rej["reason"] and ("dog" in rej["reason"] or "geometry" in rej["reason"])


@pytest.mark.labelstudio
def test_every_reviewer_action_arrives_with_geometry_class_action_and_annotator(live, reviewed):
    annotator = f"ls-user-{live.ls.reviewer_id}"
    n = live.notes
    # astronaut: accepted person mask (the sent mask, its box), corrected face (the moved box)
    w, h = live.images["astronaut.png"]["width"], live.images["astronaut.png"]["height"]
    rows = {r["region_id"]: r for r in human(live, "astronaut.png")}
    person = rows[n["astronaut"]["person"]["id"]]
    assert (person["category"], person["action"]) == ("person", "accepted")
    assert mask_iou(person["mask"], live.exported[person["source_prediction_id"]]["mask"]) == 1.0
    assert person["bbox"] == pytest.approx(rle_bbox_xyxy(person["mask"]), abs=1e-6)
    face = rows[n["astronaut"]["face"]["id"]]
    assert (face["category"], face["action"]) == ("face", "corrected")
    assert face["source_prediction_id"] == n["astronaut"]["face"]["id"]
    assert face["bbox"] == pytest.approx(px(n["astronaut"]["moved"]["value"], w, h), abs=1e-6)
    shifted = [v + (0.05 * w if i % 2 == 0 else 0) * (1 if n["astronaut"]["moved"]["value"]["x"] >
                                                      n["astronaut"]["face"]["value"]["x"] else -1)
               for i, v in enumerate(live.exported[face["source_prediction_id"]]["bbox"])]
    assert face["bbox"] == pytest.approx(shifted, abs=1e-6)
    assert iou(face["bbox"], live.exported[face["source_prediction_id"]]["bbox"]) < 0.95
    # coins: relabeled face -> cat, same box; the other face deleted (marker row)
    rows = human(live, "coins.png")
    (cat,) = [r for r in rows if r["action"] != "deleted"]
    assert (cat["category"], cat["action"]) == ("cat", "corrected")
    assert cat["source_prediction_id"] == n["coins"]["relabeled"]["id"]
    assert cat["bbox"] == pytest.approx(live.exported[n["coins"]["relabeled"]["id"]]["bbox"], abs=1e-6)
    deleted = {r["source_prediction_id"]: r for r in rows if r["action"] == "deleted"}
    assert n["coins"]["deleted"]["id"] in deleted
    assert deleted[n["coins"]["deleted"]["id"]]["category"] == "face"
    assert deleted[n["coins"]["deleted"]["id"]]["bbox"] == pytest.approx(
        live.exported[n["coins"]["deleted"]["id"]]["bbox"], abs=1e-6)
    # grace hopper: accepted face, added person at the drawn box
    gw, gh = live.images["grace_hopper.jpg"]["width"], live.images["grace_hopper.jpg"]["height"]
    rows = {r["region_id"]: r for r in human(live, "grace_hopper.jpg")}
    assert rows[n["grace"]["face"]["id"]]["action"] == "accepted"
    added = rows[n["grace"]["added"]["id"]]
    assert (added["category"], added["action"], added["source_prediction_id"]) == ("person", "added", None)
    assert added["bbox"] == pytest.approx([0.10 * gw, 0.20 * gh, 0.70 * gw, 0.95 * gh], abs=1e-6)
    # one reviewer, pseudonymous; the source names the server and the project
    everything = [r for name in ("astronaut.png", "coins.png", "grace_hopper.jpg") for r in human(live, name)]
    assert {r["annotator"] for r in everything} == {annotator}
    assert {r["source"] for r in everything} == {live.source}
    assert {r["tool"] for r in everything} == {"label-studio"}


@pytest.mark.labelstudio
def test_a_skipped_task_is_a_cancelled_review_and_stays_in_review(live, reviewed):
    iid = live.images["rocket.jpg"]["image_id"]
    revs = [r for r in review_store(live.ws).reviews() if r["image_id"] == iid]
    assert [(r["was_cancelled"], r["tool_annotation_id"], r["annotator"]) for r in revs] == [
        (True, str(live.notes["rocket"]["annotation"]), f"ls-user-{live.ls.reviewer_id}")]
    assert iid not in review_store(live.ws).latest_reviews()
    assert human(live, "rocket.jpg") == []


@pytest.mark.labelstudio
def test_the_pull_went_through_the_file_import_path(live, reviewed):
    reviews = [r for r in review_store(live.ws).reviews() if r["source"] == live.source]
    (file,) = {r["file"] for r in reviews}
    path = Path(file)
    assert path.is_file() and path.parent.name == "pulls" and path.parent.parent.parent.name == "label_studio"
    records = parse_export(json.loads(path.read_text(encoding="utf-8")))
    assert {(r["task_id"], r["tool_annotation_id"]) for r in records} >= {
        (str(live.tasks[n]["id"]), str(live.notes[k]["annotation"]))
        for n, k in (("astronaut.png", "astronaut"), ("coins.png", "coins"), ("grace_hopper.jpg", "grace"))}
    # the guidelines the reviewer worked under: Label Studio exports back the task data we sent
    sha = json.loads((live.ws.review_out / BATCH / "export.json").read_text())["guidelines_sha256"]
    assert {r.get("data_guidelines_sha256") for r in records} == {sha}
    assert {h["guidelines_sha256"] for h in review_store(live.ws).human_labels() if h["source"] == live.source} == {sha}


@pytest.mark.labelstudio
def test_resolved_labels_are_the_reviewers(live, reviewed):
    cli(live.ws.root, "run")
    labels, resolved = repo.read_labels(live.ws)
    by_image: dict[str, list] = {}
    for lab in labels:
        by_image.setdefault(lab["image_id"], []).append(lab)
    coins = by_image[live.images["coins.png"]["image_id"]]
    assert [(lab["category"], lab["origin"]) for lab in coins] == [("cat", "human")]
    grace = sorted((lab["category"], lab["origin"]) for lab in by_image[live.images["grace_hopper.jpg"]["image_id"]])
    assert grace == [("face", "human"), ("person", "human")]
    assert live.images["rocket.jpg"]["image_id"] not in {r["image_id"] for r in resolved if r["resolution"] == "reviewed"}


# --------------------------------------------------------------------------- updates, sensor


@pytest.mark.labelstudio
def test_sensor_polls_and_an_updated_annotation_supersedes_keeping_history(live, reviewed):
    from pipelines.sensors import label_studio_sensor

    with sensor_context(live) as ctx:
        first = label_studio_sensor(ctx)
        cursor = ctx.cursor
    assert isinstance(first, dg.RunRequest) and first.run_key.startswith(f"{live.source}@")
    with sensor_context(live, cursor=cursor) as ctx2:
        skip = label_studio_sensor(ctx2)
    assert isinstance(skip, dg.SkipReason) and "no task updated since" in skip.skip_message
    # the reviewer moves the astronaut's face box again (an edit of the same annotation)
    n = live.notes["astronaut"]
    again = json.loads(json.dumps(n["moved"]))
    again["value"]["y"] = max(0.0, again["value"]["y"] - 4.0)
    again["value"]["height"] += 2.0
    live.ls.client(live.ls.reviewer_token).annotations.update(n["annotation"], result=[again, n["person"]])
    with sensor_context(live, cursor=cursor) as ctx3:
        third = label_studio_sensor(ctx3)
    assert isinstance(third, dg.RunRequest) and third.run_key > first.run_key
    assert third.tags["labelloop/label-studio"] == live.source
    # an incremental pull (no overlap) reads just that task and imports the new version
    s = pull_reviews(live.ws, live.server(), title=live.title, overlap_s=0)
    assert (s["tasks"], s["reviews"], s["skipped"], s["rejects"]) == (1, 1, 0, 0)
    store = review_store(live.ws)
    versions = sorted((r for r in store.reviews() if r["tool_annotation_id"] == str(n["annotation"])),
                      key=lambda r: r["updated_at"])
    assert len(versions) == 2 and versions[0]["updated_at"] < versions[1]["updated_at"]
    w, h = live.images["astronaut.png"]["width"], live.images["astronaut.png"]["height"]
    (face,) = [r for r in human(live, "astronaut.png") if r["category"] == "face"]
    assert face["review_id"] == versions[1]["review_id"]
    assert face["bbox"] == pytest.approx(px(again["value"], w, h), abs=1e-6)
    history = [r for r in store.human_labels() if r["region_id"] == n["face"]["id"]]
    assert sorted(r["review_id"] for r in history) == sorted(v["review_id"] for v in versions)
    assert face["annotation_id"] == {r["annotation_id"] for r in history}.pop()  # same label, two versions


@pytest.mark.labelstudio
def test_pulling_everything_again_changes_nothing(live, reviewed):
    store = review_store(live.ws)
    before = sorted(r["review_id"] for r in store.reviews())
    before_labels = sorted((r["annotation_id"], r["review_id"]) for r in store.current_human_labels())
    with server_env(live.ls):
        out = cli(live.ws.root, "pull-review", "--all").output
    assert "0 new reviews" in out and "1 rejected" in out
    store = review_store(live.ws)
    assert sorted(r["review_id"] for r in store.reviews()) == before
    assert sorted((r["annotation_id"], r["review_id"]) for r in store.current_human_labels()) == before_labels


# --------------------------------------------------------------------------- errors


@pytest.mark.labelstudio
def test_a_refused_token_is_a_clear_error(live):
    with pytest.raises(LabelStudioServerError, match=r"HTTP 401 \(the API token was refused"):
        LabelStudioServer(live.ls.url, "not-a-token").whoami()
    with server_env(live.ls, token="not-a-token"):
        out = cli(live.ws.root, "push-review", ok=False)
    assert out.exit_code == 1
    last = out.output.strip().splitlines()[-1]
    assert last.startswith("labelloop: error: batch b1: ") and live.ls.url in last and "HTTP 401" in last


@pytest.mark.labelstudio
def test_an_unreachable_server_is_a_clear_error(live):
    from support.helpers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LabelStudioServerError, match=rf"Label Studio at {url}: .*(Connect|connect)"):
        LabelStudioServer(url, live.ls.admin_token, timeout=5).whoami()


@pytest.mark.labelstudio
def test_a_batch_without_export_and_a_config_that_would_drop_labels_are_refused(live):
    with pytest.raises(WorkspaceError, match="batch nope: no review export"):
        push_batch(live.ws, live.server(), "nope", title=live.title, document_root=str(live.ls.document_root))
    client = live.ls.client()
    narrow = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
              '<Label value="person"/><Label value="dog"/></RectangleLabels></View>')
    client.projects.create(title="labelloop other", label_config=narrow)
    with pytest.raises(LabelStudioServerError, match="label/dog"):
        push_batch(live.ws, live.server(), BATCH, title="labelloop other", document_root=str(live.ls.document_root))
