"""No human work lost: each way of losing a review is a test here.

The review files are the real Label Studio 1.23.2 exports (tests/fixtures), edited the way the
tool or a hostile sender would; the workspace case runs the real pipeline functions (OpenCV
pre-labeler, routing, export, import, label resolution) on real photos."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import shutil

import pytest
import yaml

from labelloop.formats.labelstudio import ExportFormatError, parse_export, read_export
from labelloop.ingest.files import ingest
from labelloop.ingest.scan import scan_batch
from labelloop.prelabel.stage import prelabel_batch
from labelloop.qa.agreement import current_annotations
from labelloop.review.export import export_batch
from labelloop.review.files import read_review_file
from labelloop.review.importer import import_file, import_review, register_export, register_import_tasks
from labelloop.review.resolve import resolve_workspace
from labelloop.review.store import ReviewStore, make_import_id, review_store
from labelloop.routing.queue import route_batch
from labelloop.workspace import repo
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace
from resources.prelabeler import PreLabelerResource
from support.helpers import ls_fixtures, skimage_data

FX = ls_fixtures()
CATS = ["person", "face", "cat"]
SIZES = {"astronaut.png": (512, 512), "chelsea.png": (451, 300), "coffee.png": (600, 400)}
SRC = "label-studio/project-1"


def sha(name: str) -> str:
    return hashlib.sha256((skimage_data() / name).read_bytes()).hexdigest()


IMAGES = [{"image_id": sha(n), "uri": f"inbox/b1/photos/{n}", "source_path": n, "width": w, "height": h,
           "status": "ok", "duplicate_of": None} for n, (w, h) in SIZES.items()]
EXPORTED, _ = register_import_tasks(json.loads((FX / "import_tasks.json").read_text()), source=SRC, images=IMAGES)


def tasks():
    return json.loads((FX / "export_json.json").read_text(encoding="utf-8"))


def commit(store: ReviewStore, export: list, source: str = SRC, name: str = "export.json") -> dict:
    data = json.dumps(export, sort_keys=True).encode()
    res = import_review(parse_export(export), file_name=name, import_sha256=hashlib.sha256(data).hexdigest(),
                        source=source, images=IMAGES, exported=EXPORTED, known_review_keys=store.known_review_keys(),
                        categories=CATS)
    store.commit_import(make_import_id(source, hashlib.sha256(data).hexdigest()), res)
    return res


def labels(store: ReviewStore) -> list[tuple]:
    return sorted((h["image_id"][:8], h["annotation_id"], h["category"], tuple(round(v, 6) for v in h["bbox"]),
                   h["action"], h["review_id"]) for h in store.current_human_labels())


def edited_v2():
    """The reviewer saved the astronaut annotation again later, with the face box moved."""
    t = tasks()
    ann = t[0]["annotations"][0]
    ann["updated_at"] = "2026-11-30T09:00:00.000000Z"
    ann["result"][0]["value"].update(x=10.0, y=10.0)
    return t


def reexported():
    """Label Studio's next export of the same work: fields such as created_ago and total counts
    rewritten, tasks in another order, a new file byte for byte."""
    t = tasks()
    for task in t:
        task["updated_at"] = "2026-12-05T00:00:00Z"
        task["total_predictions"] = 7
        for a in task["annotations"]:
            if a.get("prediction"):
                a["prediction"]["created_ago"] = "6 days, 2 hours"
    return list(reversed(t))


# ---------------------------------------------------------------------------- identity


def test_twice_reexported_or_out_of_order_gives_the_labels_of_one_import_in_order(tmp_path):
    """Every order of (export, edited later version, re-export of the first, the export again)
    gives the same current labels as importing the two versions once, in order."""
    versions = {"v1": tasks(), "v2": edited_v2(), "re": reexported(), "again": tasks()}
    ref = ReviewStore(tmp_path / "ref")
    commit(ref, versions["v1"])
    commit(ref, versions["v2"])
    want = labels(ref)
    assert any(lab[3][:2] == (51.2, 51.2) for lab in want)  # the moved face (10% of 512 px)
    for i, order in enumerate(itertools.permutations(versions)):
        store = ReviewStore(tmp_path / f"s{i}")
        for name in order:
            commit(store, versions[name], name=f"{name}.json")
        assert labels(store) == want, order
        assert len(store.reviews()) == 4  # 3 tasks + the later version of one: nothing duplicated


def test_a_later_version_supersedes_and_both_stay_in_the_history(tmp_path):
    store = ReviewStore(tmp_path / "s")
    commit(store, edited_v2())
    commit(store, tasks())  # the older version arrives second
    astro = sha("astronaut.png")
    history = sorted((r["updated_at"], r["review_id"]) for r in store.reviews() if r["image_id"] == astro)
    assert [u for u, _ in history] == ["2026-11-29T08:15:58.515742Z", "2026-11-30T09:00:00.000000Z"]
    assert store.latest_reviews()[astro]["updated_at"] == "2026-11-30T09:00:00.000000Z"
    old_rows = [h for h in store.human_labels() if h["review_id"] == history[0][1]]
    assert len(old_rows) == 2 and all(h["reviewed_at"] == history[0][0] for h in old_rows)  # still stored
    # the label keeps its annotation_id across versions: the later one replaces it, never doubles it
    faces = [h for h in store.current_human_labels() if h["image_id"] == astro and h["category"] == "face"]
    assert len(faces) == 1 and faces[0]["reviewed_at"] == "2026-11-30T09:00:00.000000Z"


def test_two_reviewers_of_one_task_are_kept_separately_and_both_count_for_agreement(tmp_path):
    store = ReviewStore(tmp_path / "s")
    t = tasks()
    second = copy.deepcopy(t[0]["annotations"][0])
    second.update(id=99, completed_by=7, updated_at="2026-11-29T09:30:00Z")
    second["result"] = second["result"][1:]  # the second reviewer kept only the person
    t[0]["annotations"].append(second)
    commit(store, t)
    astro = sha("astronaut.png")
    both = [r for r in store.reviews() if r["image_id"] == astro]
    assert sorted((r["tool_annotation_id"], r["annotator"]) for r in both) == [("1", "ls-user-1"), ("99", "ls-user-7")]
    rows = {r["review_id"]: [h for h in store.human_labels() if h["review_id"] == r["review_id"]] for r in both}
    assert sorted(len(v) for v in rows.values()) == [2, 2]  # reviewer 7: the person + a deletion marker
    # labels: the most recent annotation of the image (documented in labelloop.review.store)
    assert store.latest_reviews()[astro]["annotator"] == "ls-user-7"
    # agreement (labelloop.qa.agreement) sees both reviewers' current annotations of the image
    cur = current_annotations(store.reviews(), store.human_labels())
    assert sorted(a["annotator"] for a in cur if a["image_id"] == astro) == ["ls-user-1", "ls-user-7"]


def test_two_projects_with_equal_annotation_ids_never_overwrite(tmp_path):
    store = ReviewStore(tmp_path / "s")
    commit(store, tasks(), source="label-studio/project-1")
    other = edited_v2()
    for task in other:
        task["project"] = 2
    commit(store, other, source="label-studio/project-2")
    assert len(store.reviews()) == 6 and len(store.import_ids()) == 2
    keys = {(r["source"], r["task_id"], r["tool_annotation_id"]) for r in store.reviews()}
    assert ("label-studio/project-1", "1", "1") in keys and ("label-studio/project-2", "1", "1") in keys
    p1 = [h for h in store.human_labels() if h["source"] == "label-studio/project-1"]
    assert len(p1) == 3  # project 1's labels untouched by project 2's equal ids


# ---------------------------------------------------------------------------- hostile exports


def test_a_hostile_export_rejects_each_bad_task_by_name_and_imports_the_rest(tmp_path):
    good = tasks()
    bad = []

    def clone(task_id, mutate):
        c = copy.deepcopy(good[0])
        c["id"] = task_id
        c["annotations"][0]["id"] = 500 + task_id
        mutate(c)
        bad.append(c)

    def region(c):
        return c["annotations"][0]["result"][0]

    # another control of the same type beside labelloop's own 'label' (the task's second region):
    # which is ours is ambiguous
    clone(11, lambda c: region(c).update(from_name="tag"))
    clone(12, lambda c: region(c).update(to_name="img"))
    clone(13, lambda c: region(c)["value"].update(rectanglelabels=["unicorn"]))
    clone(14, lambda c: region(c)["value"].update(x=95.0))  # runs past the right edge
    clone(15, lambda c: region(c)["value"].update(width=-5.0))  # negative size
    clone(16, lambda c: c["data"].update(image="/data/local-files/?d=photos/not-ours.png"))
    clone(17, lambda c: c["data"].update(image="/data/local-files/?d=../../../etc/astronaut.png"))
    store = ReviewStore(tmp_path / "s")
    res = commit(store, good + bad, name="hostile.json")
    reasons = {r["item"]: r["reason"] for r in res["rejects"]}
    assert set(reasons) == {f"task {i} annotation {500 + i}" for i in range(11, 18)}
    assert "controls ['label', 'tag'] all make rectanglelabels regions" in reasons["task 11 annotation 511"]
    assert "to_name 'img' is not the image object" in reasons["task 12 annotation 512"]
    assert "unknown category 'unicorn'" in reasons["task 13 annotation 513"]
    assert "outside the 512x512 image" in reasons["task 14 annotation 514"]
    assert "zero or negative area" in reasons["task 15 annotation 515"]
    assert "unknown image '/data/local-files/?d=photos/not-ours.png'" in reasons["task 16 annotation 516"]
    assert "'..' path component" in reasons["task 17 annotation 517"]
    assert all(r["file"] == "hostile.json" for r in res["rejects"])
    # nothing of a bad task is stored; the good ones are
    assert sorted(r["task_id"] for r in store.reviews()) == ["1", "2", "3"]
    assert {h["review_id"] for h in store.human_labels()} <= {r["review_id"] for r in store.reviews()}
    assert len(store.rejects()) == 7


def test_a_huge_file_is_refused_by_size_before_it_is_read(tmp_path):
    big = tmp_path / "huge-export.json"
    shutil.copyfile(FX / "export_json.json", big)
    size = big.stat().st_size
    with pytest.raises(ExportFormatError, match=r"huge-export\.json: .* MiB is over the .* MiB limit .*review.max_export_mb"):
        read_export(big, max_bytes=size - 1)
    with pytest.raises(ExportFormatError, match="over the"):
        read_review_file(big, max_bytes=size - 1)
    assert len(read_export(big, max_bytes=size)) == 3  # at the limit it reads
    # a sparse 1 GiB file: its size is known without writing (or reading) a byte of it
    sparse = tmp_path / "one-gib.json"
    with open(sparse, "wb") as fh:
        fh.truncate(2**30)
    with pytest.raises(ExportFormatError, match=r"one-gib\.json: 1024\.0 MiB is over the 200\.0 MiB limit"):
        read_review_file(sparse)


@pytest.mark.parametrize("content, match", [
    ('{"hello": "world"}', "neither a COCO file nor a Label Studio export"),
    ("[1, 2, 3]", "item at index 0 is a int"),
    ("[{\"data\": {\"image\": \"x.png\"}, \"predictions\": []}]", "import file"),
    ("\u00ff\u00fe garbage", "not valid JSON"),
    ("<svg xmlns='http://www.w3.org/2000/svg'/>", "not <annotations>"),
])
def test_a_file_that_is_not_an_export_is_rejected_whole(tmp_path, content, match):
    p = tmp_path / "thing.json"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ExportFormatError, match=match):
        read_review_file(p)


# ---------------------------------------------------------------------------- model re-run (workspace)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("nwl")
    src = root / "src" / "photos"
    src.mkdir(parents=True)
    for n in SIZES:
        shutil.copyfile(skimage_data() / n, src / n)
    ws = init_workspace(Workspace.at(root / "ws"))
    ingest(ws, src, "b1")
    return ws


def run_batch(ws: Workspace) -> str:
    model = PreLabelerResource().get(ws.config(), str(ws.root))
    scan_batch(ws, "b1")
    prelabel_batch(ws, "b1", model, run_id="test")
    route_batch(ws, "b1", model.model_id)
    export_batch(ws, "b1", model.model_id, set(review_store(ws).latest_reviews()))
    resolve_workspace(ws, model.model_id)
    return model.model_id


def test_a_model_rerun_never_changes_hides_or_duplicates_a_reviewed_label(workspace):
    ws = workspace
    first = run_batch(ws)
    sent = {t["data"]["source_path"] for t in json.loads((ws.review_out / "b1" / "tasks.json").read_text())}
    assert (ws.review_out / "b1" / "annotations.xml").is_file()  # the CVAT form of the same batch
    register_export(ws, FX / "import_tasks.json", SRC)
    out = import_file(ws, FX / "export_json.json")
    assert out["reviews"] == 3 and out["rejects"] == 0, out
    resolve_workspace(ws, first)
    before = sorted((r["label_id"], r["category"], tuple(r["bbox"]), r["origin"]) for r in repo.read_labels(ws)[0])
    humans = review_store(ws).current_human_labels()
    assert {lab[3] for lab in before} == {"human"} and len(before) == 3 and sent
    # a new model: new inference settings give a new model_id and new predictions
    cfg = yaml.safe_load(ws.config_path.read_text())
    cfg["prelabeler"]["max_side"] = 640
    ws.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    second = run_batch(ws)
    assert second != first and len(list((ws.table("prelabels") / "b1").iterdir())) == 2
    after = sorted((r["label_id"], r["category"], tuple(r["bbox"]), r["origin"]) for r in repo.read_labels(ws)[0])
    assert after == before  # not changed, hidden or duplicated
    assert review_store(ws).current_human_labels() == humans
    assert json.loads((ws.review_out / "b1" / "tasks.json").read_text()) == []  # reviewed: not re-sent
    # ... unless asked
    cfg["review"] = {"resend_reviewed": True}
    ws.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_batch(ws)
    resent = {t["data"]["source_path"] for t in json.loads((ws.review_out / "b1" / "tasks.json").read_text())}
    assert resent == sent
    assert sorted((r["label_id"], r["category"], tuple(r["bbox"]), r["origin"]) for r in repo.read_labels(ws)[0]) == before
