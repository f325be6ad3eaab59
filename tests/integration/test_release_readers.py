"""Our releases read by other tools' own readers: pycocotools evaluates them in ``bbox``, ``segm``
and ``keypoints`` modes; datumaro 1.13.12 (``coco_instances``, ``coco_person_keypoints``,
``yolo_ultralytics``) and supervision 0.31.2 (``DetectionDataset.from_coco``) load them, and
the image and object counts and the boxes they find are the ones we wrote.

datumaro and supervision run in ``.venv-readers`` (scripts/test-services.sh installs it: they pin
other pillow / pyarrow / pandas / opencv builds than labelloop), through
``tests/support/release_readers.py``. The release: 4 real photos (one EXIF-rotated), a person
with keypoints, a cat with a mask (``cat`` is a mask category, ``person`` box-level) and a crowd
region that is coffee.png's only object.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from labelloop import tables
from labelloop.tables.schemas import RELEASE_IMAGES
from support.readers_venv import read_with_readers
from support.release_fixtures import build_files, photos, with_crowd  # noqa: F401 (photos is a fixture)


@pytest.fixture(scope="module")
def release(photos, tmp_path_factory):  # noqa: F811
    root, images = photos
    out = tmp_path_factory.mktemp("readers") / "release"
    manifest = build_files(root, out, with_crowd(images), out.parent / "reg")
    return out, manifest


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _splits(out: Path) -> list[str]:
    return sorted(p.stem.split("_", 1)[1] for p in (out / "annotations").glob("instances_*.json"))


def _evaluate(gt: COCO, dets: list[dict], mode: str, sigmas=None) -> COCOeval:
    dt = _quiet(gt.loadRes, dets)
    ev = COCOeval(gt, dt, mode)
    if sigmas is not None:
        ev.params.kpt_oks_sigmas = sigmas
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    return ev


def test_pycocotools_evaluates_every_mode_of_the_release(release):
    out, manifest = release
    modes = {"bbox": 0, "segm": 0, "keypoints": 0}
    for split in _splits(out):
        gt = _quiet(COCO, str(out / "annotations" / f"instances_{split}.json"))
        exact = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                 for a in gt.dataset["annotations"] if not a["iscrowd"]]
        if exact:  # the ground truth as detections: AP 1.0
            assert _evaluate(gt, exact, "bbox").stats[0] == pytest.approx(1.0)
            modes["bbox"] += 1
        segm = out / "annotations" / f"segm-{split}.json"
        gt_s = _quiet(COCO, str(segm))
        # the segmentation view holds the mask category's objects only, each with a segmentation
        assert {gt_s.cats[a["category_id"]]["name"] for a in gt_s.dataset["annotations"]} <= {"cat"}
        assert all(a["segmentation"] for a in gt_s.dataset["annotations"])
        masks = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": gt_s.annToRLE(a),
                  "score": 1.0} for a in gt_s.dataset["annotations"] if not a["iscrowd"]]
        if masks:
            ev = _evaluate(gt_s, masks, "segm")
            assert ev.stats[0] == pytest.approx(1.0)
            person = [c["id"] for c in gt_s.dataset["categories"]].index(gt_s.getCatIds(catNms=["person"])[0])
            assert (ev.eval["precision"][:, :, person, 0, 2] == -1).all()  # box-level: no ground truth, not in the mean
            modes["segm"] += 1
        kp_file = out / "annotations" / f"person_keypoints_{split}.json"
        if kp_file.is_file():
            gt_k = _quiet(COCO, str(kp_file))
            assert [c["name"] for c in gt_k.dataset["categories"]] == ["person"]
            kps = [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
                    "score": 1.0} for a in gt_k.dataset["annotations"] if not a["iscrowd"]]
            if kps:  # K = 3, not COCO's 17: one OKS sigma per keypoint
                assert _evaluate(gt_k, kps, "keypoints", np.full(3, 0.05)).stats[0] == pytest.approx(1.0)
                modes["keypoints"] += 1
    assert modes["bbox"] >= 1 and modes["segm"] == 1 and modes["keypoints"] == 1


def test_an_object_without_a_mask_is_an_ignore_region_in_the_segmentation_view(photos, tmp_path):  # noqa: F811
    root, images = photos
    inputs = with_crowd(images)
    inputs.mask_categories = ["cat", "person"]  # person's objects here have boxes only
    out = tmp_path / "rel"
    build_files(root, out, inputs, tmp_path / "reg")
    anns = [a for s in _splits(out) for a in json.loads((out / "annotations" / f"segm-{s}.json").read_text())["annotations"]]
    person = next(a for a in anns if a["label_id"] == "lb-1")
    assert person["iscrowd"] == 1 and isinstance(person["segmentation"], dict)
    x, y, w, h = person["bbox"]
    assert person["area"] == pytest.approx(round(w) * round(h), rel=0.02)
    inst = [a for s in _splits(out) for a in json.loads((out / "annotations" / f"instances_{s}.json").read_text())["annotations"]]
    assert next(a for a in inst if a["label_id"] == "lb-1")["iscrowd"] == 0  # the instances file is unchanged


def _same_boxes(got: list, want: list) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=0.02)


def test_datumaro_and_supervision_read_the_release(release):
    out, manifest = release
    got = read_with_readers(out)
    rel_images = tables.read_rows(out / "images.parquet", RELEASE_IMAGES)
    seen = {"coco": 0, "yolo": 0, "keypoints": 0, "supervision": 0}
    for split in _splits(out):
        coco = json.loads((out / "annotations" / f"instances_{split}.json").read_text())
        stems = {Path(im["file_name"]).stem: im["id"] for im in coco["images"]}
        anns = {stem: [a for a in coco["annotations"] if a["image_id"] == iid] for stem, iid in stems.items()}
        assert len(stems) == sum(1 for r in rel_images if r["split"] == split)
        # datumaro, COCO instances: every image found beside annotations/, every object, its boxes
        dm = got["datumaro"]["coco_instances"][split]
        assert (dm["images"], dm["missing_media"]) == (len(stems), 0), dm
        assert sum(dm["objects"].values()) >= len(coco["annotations"])
        for stem, own in anns.items():
            _same_boxes(dm["boxes"][stem], sorted([round(v, 2) for v in a["bbox"]] for a in own))
        seen["coco"] += dm["images"]
        # datumaro, COCO person keypoints: one Points annotation per object of the keypoints file
        kp = json.loads((out / "annotations" / f"person_keypoints_{split}.json").read_text())
        dk = got["datumaro"]["coco_person_keypoints"][split]
        assert dk["objects"].get("Points", 0) == len(kp["annotations"])
        for a in kp["annotations"]:
            stem = next(s for s, iid in stems.items() if iid == a["image_id"])
            want = [round(float(v), 2) for i, v in enumerate(a["keypoints"]) if i % 3 != 2]
            assert want in dk["points"][stem]
        seen["keypoints"] += len(kp["annotations"])
        # datumaro, YOLO (Ultralytics layout): the YOLO view, without crowd regions and without the
        # image whose only object is a crowd region
        in_yolo = {stem: own for stem, own in anns.items() if not own or not all(a["iscrowd"] for a in own)}
        dy = got["datumaro"]["yolo"].get(split, {"images": 0, "boxes": {}, "missing_media": 0})
        assert (dy["images"], dy["missing_media"]) == (len(in_yolo), 0), (split, dy)
        for stem, own in in_yolo.items():
            _same_boxes(dy["boxes"][stem], sorted([round(v, 2) for v in a["bbox"]] for a in own if not a["iscrowd"]))
        seen["yolo"] += dy["images"]
        # supervision: DetectionDataset.from_coco with the split's image folder
        sv = got["supervision"][split]
        assert (sv["images"], sv["missing_media"], sv["objects"]) == (len(stems), 0, len(coco["annotations"]))
        assert sv["classes"] == ["person", "cat"]
        for stem, own in anns.items():
            _same_boxes(sv["boxes"][stem], sorted([round(v, 2) for v in a["bbox"]] for a in own))
        seen["supervision"] += sv["images"]
    assert seen == {"coco": 4, "yolo": 3, "keypoints": 2, "supervision": 4}
