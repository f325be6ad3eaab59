"""Gold sets: registration from Label Studio and COCO files, honeypots in review exports,
reviewers vs gold figures and gates, and the release they block (real photos, real Dagster runs)."""

from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image

from labelloop.images import samples
from labelloop.qa.agreement import current_annotations
from labelloop.qa.gold_eval import gold_gates, reviewer_vs_gold
from labelloop.qa.run import run_qa
from labelloop.review.gold import GoldError, choose_honeypots, mix_tasks, register_gold
from labelloop.review.store import review_store
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace
from labelloop.workspace.repo import read_gold_images, read_gold_labels, read_qa
from support.helpers import FIXTURES, cli
from support.qa_helpers import degrade, jitter, review_variant


# ------------------------------------------------------------------ library level, no workspace
def _labels(image, boxes):
    return [{"image_id": image, "category": c, "bbox": list(b), "annotation_id": f"{image}-{k}"}
            for k, (c, b) in enumerate(boxes)]


GOLD_BOXES = [("person", (10, 10, 110, 210)), ("face", (40, 20, 80, 60)), ("cat", (200, 100, 300, 180))]


def _gold(n_images):
    rows = []
    for i in range(n_images):
        rows += [{"image_id": f"g{i:03d}", "category": c, "bbox": list(b)} for c, b in GOLD_BOXES]
    return rows, [f"g{i:03d}" for i in range(n_images)]


def _ann(annotator, image, labels):
    return {"annotator": annotator, "image_id": image, "review_id": f"{annotator}-{image}", "labels": labels}


def test_matching_review_passes_on_a_large_set_and_warns_on_a_small_one():
    gold, ids = _gold(30)  # 90 boxes: enough for the Wilson lower bound of 90/90 to clear 0.95
    anns = [_ann("r1", i, _labels(i, GOLD_BOXES)) for i in ids]
    res = reviewer_vs_gold(gold, ids, anns)
    f = res["reviewers"]["r1"]
    assert (f["objects"], f["mean_iou"], f["class_pairs"], f["class_correct"]) == (90, 1.0, 90, 90)
    assert f["detection"]["overall"]["iou@0.75"]["precision"] == 1.0
    gates = {g["name"]: g for g in gold_gates(res)}
    assert gates["gold_mean_iou"]["status"] == "pass" and gates["gold_class_accuracy"]["status"] == "pass"
    small = reviewer_vs_gold(gold[:6], ids[:2], anns[:2])  # 6 boxes
    gates = {g["name"]: g for g in gold_gates(small)}
    assert gates["gold_mean_iou"]["status"] == "pass"  # 6 objects, all IoU 1: the interval is [1, 1]
    assert gates["gold_class_accuracy"]["status"] == "warn"
    assert "about 73 matched boxes would be needed" in gates["gold_class_accuracy"]["reason"]


def test_degraded_review_fails_both_gates_with_hand_computed_figures():
    gold, ids = _gold(30)
    shifted = lambda b: (b[0] + (b[2] - b[0]) / 2, b[1] + (b[3] - b[1]) / 2,  # noqa: E731
                         b[2] + (b[2] - b[0]) / 2, b[3] + (b[3] - b[1]) / 2)
    # person kept but labeled cat (swapped), face shifted by half its size, cat dropped
    bad = [("cat", GOLD_BOXES[0][1]), ("face", shifted(GOLD_BOXES[1][1]))]
    anns = [_ann("r9", i, _labels(i, bad)) for i in ids]
    res = reviewer_vs_gold(gold, ids, anns)
    f = res["reviewers"]["r9"]
    # objects per image: swapped pair IoU 1, shifted pair IoU (20*20)/(2*1600-400) = 1/7, dropped cat 0
    assert f["objects"] == 90
    assert f["mean_iou"] == pytest.approx((1 + 1 / 7 + 0) / 3)
    assert (f["class_pairs"], f["class_correct"]) == (30, 0)  # only the swapped pair reaches IoU 0.5
    assert f["confusion"]["cat"]["person"] == 30 and f["confusion"]["missing"]["cat"] == 30
    gates = {g["name"]: g for g in gold_gates(res)}
    assert gates["gold_mean_iou"]["status"] == "fail"
    assert "r9 mean IoU vs gold 0.381" in gates["gold_mean_iou"]["reason"]
    assert "lies below the 0.5 threshold" in gates["gold_mean_iou"]["reason"]
    assert gates["gold_class_accuracy"]["status"] == "fail"
    assert "r9 class accuracy vs gold 0.000" in gates["gold_class_accuracy"]["reason"]
    assert gates["gold_mean_iou"]["images"] == ids
    strict = {g["name"]: g for g in gold_gates(reviewer_vs_gold(gold, ids, anns, 0.75), 0.75, strict=True)}
    assert strict["gold_mean_iou"]["threshold"] == 0.75 and strict["gold_mean_iou"]["reason"].endswith("(strict)")


def test_no_gold_is_not_measured():
    gates = gold_gates(reviewer_vs_gold([], [], []))
    assert [g["status"] for g in gates] == ["not_measured", "not_measured"]
    assert "no gold set registered" in gates[0]["reason"]
    json.dumps(gates, allow_nan=False)


def test_honeypot_choice_is_seeded_per_batch_and_mixed_among_tasks():
    ids = [f"g{i}" for i in range(20)]
    a = choose_honeypots(ids, "b1", 3)
    assert a == choose_honeypots(ids, "b1", 3) and len(a) == 3
    assert a != choose_honeypots(ids, "b2", 3)
    assert not set(choose_honeypots(ids, "b1", 3, exclude=set(a))) & set(a)
    tasks = [{"data": {"image_id": f"t{i}"}} for i in range(10)]
    mixed = mix_tasks(tasks, [{"data": {"image_id": i}} for i in a], "b1")
    assert [t["data"]["image_id"] for t in mixed if t["data"]["image_id"].startswith("t")] == [f"t{i}" for i in range(10)]
    positions = [k for k, t in enumerate(mixed) if t["data"]["image_id"] in a]
    assert len(positions) == 3 and positions != [10, 11, 12]


def test_current_annotations_keep_each_reviewer_latest_version():
    reviews = [
        {"review_id": "a1", "source": "s", "task_id": "1", "tool_annotation_id": "10", "updated_at": "2024-01-01T00:00:00Z",
         "image_id": "i", "annotator": "u1", "was_cancelled": False},
        {"review_id": "a2", "source": "s", "task_id": "1", "tool_annotation_id": "10", "updated_at": "2024-02-01T00:00:00Z",
         "image_id": "i", "annotator": "u1", "was_cancelled": False},
        {"review_id": "b1", "source": "s", "task_id": "1", "tool_annotation_id": "11", "updated_at": "2024-01-05T00:00:00Z",
         "image_id": "i", "annotator": "u2", "was_cancelled": False},
        {"review_id": "c1", "source": "s", "task_id": "1", "tool_annotation_id": "12", "updated_at": "2024-03-05T00:00:00Z",
         "image_id": "i", "annotator": "u3", "was_cancelled": True},
    ]
    hl = [{"review_id": r, "annotation_id": f"h-{r}", "image_id": "i", "category": "cat", "bbox": [0, 0, 1, 1],
           "action": "added"} for r in ("a1", "a2", "b1")]
    hl.append({"review_id": "a2", "annotation_id": "del", "image_id": "i", "category": "cat", "bbox": [0, 0, 1, 1],
               "action": "deleted"})
    out = current_annotations(reviews, hl)
    assert [(a["annotator"], a["review_id"], len(a["labels"])) for a in out] == [("u1", "a2", 1), ("u2", "b1", 1)]


# ------------------------------------------------------------------ registration on a real workspace
@pytest.fixture(scope="module")
def ws_photos(tmp_path_factory):
    base = tmp_path_factory.mktemp("gold")
    root = base / "ws"
    cli(root, "init")
    cfg = yaml.safe_load((root / "labelloop.yaml").read_text())
    cfg["qa"]["audit_error_target"] = 0.5  # the one-image audit of the demo would block: test the gold gates alone
    (root / "labelloop.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    photos = samples.stage_photos(base)
    cli(root, "ingest", str(photos), "--batch", "photos")
    cli(root, "run")
    return Workspace.at(root), base


def test_register_gold_from_label_studio_and_coco_with_rejects(ws_photos, tmp_path):
    ws, _ = ws_photos
    images = repo.all_images(ws)
    cats = ws.config().category_names
    root = tmp_path / "copy-root"
    res = register_gold(root, samples.demo_review_path(), "hand", images, cats)
    assert (res["format"], res["images"], res["labels"], res["rejects"]) == ("label-studio", 12, 7, [])
    astro = next(r for r in images if r["source_path"] == "astronaut.png")
    person = next(g for g in read_gold_labels(root) if g["image_id"] == astro["image_id"] and g["category"] == "person")
    assert person["bbox"] == pytest.approx([19, 15, 363, 512], abs=0.01)
    # COCO: one good image, one unknown file, one unknown category; and a clash with set "hand"
    coco = {"images": [{"id": 1, "file_name": "astronaut.png", "width": 512, "height": 512},
                       {"id": 2, "file_name": "nowhere.png", "width": 10, "height": 10},
                       {"id": 3, "file_name": "coffee.png", "width": 600, "height": 400}],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [19, 15, 344, 497]},
                            {"id": 2, "image_id": 3, "category_id": 2, "bbox": [1, 1, 5, 5]}]}
    path = tmp_path / "gold.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(GoldError, match="no image could be registered"):
        register_gold(root, path, "coco", images, cats)  # astronaut is already gold in "hand"
    other = tmp_path / "root2"
    res = register_gold(other, path, "coco", images, cats)
    assert (res["format"], res["images"], res["labels"]) == ("coco", 1, 1)
    reasons = " | ".join(res["rejects"])
    assert "image nowhere.png: unknown image 'nowhere.png'" in reasons
    assert "image coffee.png: region 2: unknown category 'dog'" in reasons  # review import's own reason
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GoldError, match="bad.json: cannot read a gold file"):
        register_gold(other, tmp_path / "bad.json", "x", images, cats)
    with pytest.raises(GoldError, match="invalid gold set name"):
        register_gold(other, path, "../up", images, cats)


def test_a_cvat_file_registers_as_gold(ws_photos, tmp_path):
    """A CVAT for images 1.1 file (datumaro's own export, tests/fixtures/cvat-datumaro-1.13.12) goes
    through the review readers: its three images register, its boxes, polygon and mask with them."""
    ws, _ = ws_photos
    images = repo.all_images(ws)
    src = FIXTURES / "cvat-datumaro-1.13.12" / "datumaro_export" / "default.xml"
    xml = tmp_path / "cvat-gold.xml"
    # what a CVAT server writes beside datumaro's fields: the task id, its owner and the dump time
    xml.write_bytes(src.read_bytes().replace(b"<id></id>", b"<id>7</id><owner><username>alice</username></owner>", 1)
                    .replace(b"</meta>", b"<dumped>2026-11-20 10:00:00.000000+00:00</dumped></meta>"))
    res = register_gold(tmp_path / "root", xml, "cvat", images, ws.config().category_names)
    assert (res["format"], res["images"], res["rejects"]) == ("cvat", 3, [])
    rows = read_gold_labels(tmp_path / "root")
    by_name = {r["source_path"]: r["image_id"] for r in images}
    coffee = [g for g in rows if g["image_id"] == by_name["coffee.png"]]
    assert res["labels"] == len(rows) and coffee and all(g["mask"] for g in coffee)  # the mask came with its box


def test_a_bad_gold_image_is_rejected_alone(ws_photos, tmp_path):
    """One box outside its image rejects that image, not the file: the others register."""
    ws, _ = ws_photos
    images = repo.all_images(ws)
    coco = {"images": [{"id": 1, "file_name": "astronaut.png", "width": 512, "height": 512},
                       {"id": 2, "file_name": "coffee.png", "width": 600, "height": 400},
                       {"id": 3, "file_name": "chelsea.png", "width": 451, "height": 300}],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [19, 15, 344, 497]},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [550, 300, 200, 200]},
                            {"id": 3, "image_id": 3, "category_id": 2, "bbox": [140, 20, 200, 250]}]}
    path = tmp_path / "gold.json"
    path.write_text(json.dumps(coco))
    res = register_gold(tmp_path / "root", path, "g", images, ws.config().category_names)
    assert (res["images"], res["labels"]) == (2, 2)
    (reason,) = res["rejects"]
    assert reason.startswith("image coffee.png: region 2: ") and "outside" in reason


@pytest.fixture(scope="module")
def gold_ws(ws_photos):
    ws, base = ws_photos
    out = cli(ws.root, "register-gold", str(samples.demo_review_path()), "--name", "hand")
    assert "gold set hand (label-studio): 12 images, 7 labels registered, 0 rejected" in out.output
    return ws, base


@pytest.mark.e2e
def test_honeypots_are_mixed_unmarked_into_a_new_batch(gold_ws):
    ws, base = gold_ws
    flipped = base / "flipped"
    flipped.mkdir()
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        Image.open(base / "photos" / name).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped / f"flip-{name}.png")
    cli(ws.root, "ingest", str(flipped), "--batch", "flipped")
    cli(ws.root, "run")
    tasks = json.loads((ws.review_out / "flipped" / "tasks.json").read_text())
    gold_ids = {r["image_id"] for r in read_gold_images(ws.root)}
    honey = [t for t in tasks if t["data"]["image_id"] in gold_ids]
    assert len(honey) == ws.config().qa.honeypots_per_batch == 2
    others = [t for t in tasks if t not in honey]
    for t in honey:  # a honeypot looks like any other task of the batch
        assert set(t["data"]) == set(others[0]["data"]) and t["data"]["batch"] == "flipped"
        assert set(t) == set(others[0]) and not any("gold" in str(k) for k in t["data"])
    exported = {e["image_id"] for e in repo.all_exported(ws) if e["source"] == "labelloop/flipped"}
    assert {t["data"]["image_id"] for t in honey if t["predictions"][0]["result"]} <= exported


@pytest.mark.e2e
def test_matching_reviews_never_block_and_a_degraded_one_does(gold_ws, tmp_path):
    ws, _ = gold_ws
    cli(ws.root, "import-review", str(samples.demo_review_path()))  # reviewer 3 drew the gold labels
    second = review_variant(tmp_path / "second.json", 5, jitter, updated_at="2026-11-20T11:00:00.000000Z")
    cli(ws.root, "import-review", str(second))
    out = cli(ws.root, "release")
    assert "released dataset-v" in out.output, out.output
    report = read_qa(ws)
    gates = {g["name"]: g for g in report["gates"]}
    assert gates["gold_mean_iou"]["status"] == "pass"
    assert gates["gold_class_accuracy"]["status"] == "warn"  # 7 matched boxes cannot show >= 0.95
    assert gates["inter_annotator_kappa"]["status"] == "pass"  # kappa 1 over 7 objects
    assert report["agreement"]["pairs"][0]["annotators"] == ["ls-user-3", "ls-user-5"]
    assert report["agreement"]["pairs"][0]["kappa"] == 1.0
    assert "warning: gold_class_accuracy: ls-user-3 class accuracy vs gold 1.000" in out.output
    assert "ls-user-5 class accuracy vs gold 1.000 (95% interval [0.646, 1.000], n=7 matched boxes)" in out.output

    bad = review_variant(tmp_path / "degraded.json", 9, degrade, updated_at="2026-11-22T10:00:00.000000Z",
                         id_offset=2000)
    cli(ws.root, "import-review", str(bad))
    res = cli(ws.root, "release", ok=False)
    assert res.exit_code == 3, res.output
    assert "failed: gold_class_accuracy: ls-user-9 class accuracy vs gold 0.000" in res.output
    assert "failed: inter_annotator_kappa:" in res.output
    assert "images behind gold_class_accuracy:" in res.output
    report = read_qa(ws)
    gates = {g["name"]: g for g in report["gates"]}
    f = report["gold"]["reviewers"]["ls-user-9"]
    assert (f["objects"], f["class_pairs"], f["class_correct"]) == (7, 2, 0)  # 7 gold boxes: 3 dropped, 2 shifted, 2 swapped
    assert gates["gold_mean_iou"]["status"] in ("warn", "fail") and "ls-user-9 mean IoU vs gold" in gates["gold_mean_iou"]["reason"]
    assert gates["guidelines_agreement"]["status"] == "warn"
    anns = current_annotations(review_store(ws).reviews(), review_store(ws).human_labels())
    assert {a["annotator"] for a in anns} == {"ls-user-3", "ls-user-5", "ls-user-9"}
    batch_html = ws.root / report["batch_reports"]["photos"]
    assert batch_html.is_file() and "ls-user-9" in batch_html.read_text()  # re-rendered: its labels changed

    before = batch_html.stat().st_mtime_ns
    again = run_qa(ws, report["model_id"])  # same labels: the batch's report is not rendered again
    assert again["batch_reports"] == report["batch_reports"] and batch_html.stat().st_mtime_ns == before
