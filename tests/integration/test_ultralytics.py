"""Our YOLO releases read by Ultralytics itself: ``check_det_dataset`` resolves data.yaml and
``YOLODataset`` verifies every image / label pair (``verify_image_label``) and builds its label
cache, for the detect, segment and pose layouts. The counts (images, instances, empty label files,
corrupt pairs) and the boxes must match what labelloop wrote; a crowd region (COCO iscrowd 1) is
in the COCO file and in no YOLO layout, and an image whose only object is a crowd region is left
out of the YOLO view (data.yaml names an image list) instead of becoming a negative.

Ultralytics is installed by scripts/test-services.sh with ``--no-deps`` (its opencv-python would
overwrite the cv2 of opencv-python-headless); YOLO_OFFLINE and YOLO_AUTOINSTALL keep it from
reaching the network or installing anything while the tests run.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from labelloop import tables
from labelloop.geometry.boxes import xyxy_to_xywh
from labelloop.tables.schemas import LABELS, RELEASE_IMAGES
from support.release_fixtures import CATS, build_files, photos, with_crowd  # noqa: F401 (photos is a fixture)


@pytest.fixture(scope="module")
def ultra(tmp_path_factory):
    """The ultralytics modules, with settings in a temporary folder and no network or installs.

    Importing ultralytics replaces ``PIL.Image.open`` for the whole process (a wrapper that tries
    to install pi-heif when Pillow cannot identify a file); it is put back after this module's
    tests, so no later test decodes images through Ultralytics' wrapper."""
    from PIL import Image

    pil_open = Image.open
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics-settings")))
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["YOLO_VERBOSE"] = "false"
    from ultralytics.cfg import get_cfg
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    yield {"check": check_det_dataset, "dataset": YOLODataset, "cfg": get_cfg}
    Image.open = pil_open


def _inputs(images, task):
    """:func:`with_crowd` with two splits (train and val share the 4 images, so the crowd-only
    image's split keeps other images in its YOLO view)."""
    inputs = with_crowd(images, task)
    inputs.ratios = {"train": 0.5, "val": 0.5, "test": 0.0}
    return inputs


@pytest.mark.parametrize("task", ["detect", "segment", "pose"])
def test_ultralytics_reads_our_release(photos, tmp_path, ultra, task):  # noqa: F811
    root, images = photos
    out = tmp_path / "rel"
    manifest = build_files(root, out, _inputs(images, task), tmp_path / "reg")
    assert manifest["counts"]["labels"] == 3
    data = ultra["check"](str(out / "data.yaml"), autodownload=False)
    assert data["nc"] == len(CATS) and data["names"] == dict(enumerate(CATS))
    if task == "pose":
        assert data["kpt_shape"] == [3, 3]
    rel_images = tables.read_rows(out / "images.parquet", RELEASE_IMAGES)
    by_file = {r["file_name"].rsplit("/", 1)[1]: r for r in rel_images}
    released = {lab["label_id"]: lab for lab in tables.read_rows(out / "labels.parquet", LABELS)}
    coco_crowd = 0
    seen_images = seen_instances = 0
    for split in ("train", "val", "test"):
        # the YOLO view: coffee.png, whose only object is a crowd region, stays out of it (an
        # empty label file would make it a negative)
        ours = [r for r in rel_images if r["split"] == split and r["source_path"] != "coffee.png"]
        if not ours:
            continue
        coco = json.loads((out / "annotations" / f"instances_{split}.json").read_text())
        coco_crowd += sum(a["iscrowd"] for a in coco["annotations"])
        cfg = ultra["cfg"](overrides={"task": task, "imgsz": 64, "cache": False})
        ds = ultra["dataset"](img_path=data[split], data=data, task=task, imgsz=64, augment=False, hyp=cfg,
                              prefix=f"{split}: ", rect=False, batch_size=1)
        cache = np.load(str(ds.label_files[0]).rsplit("/", 1)[0] + ".cache", allow_pickle=True).item()
        nf, nm, ne, nc, n = cache["results"]
        assert (nc, nm, n) == (0, 0, len(ours)), cache["msgs"]  # no corrupt pair, no missing file
        assert len(ds.labels) == len(ours)
        for lab in ds.labels:
            img = by_file[lab["im_file"].rsplit("/", 1)[1]]
            mine = [x for x in released.values() if x["image_id"] == img["image_id"] and not x.get("iscrowd")]
            assert len(lab["cls"]) == len(mine), (task, img["file_name"])
            assert lab["shape"] == (img["height"], img["width"])
            for k, x in enumerate(sorted(mine, key=lambda x: x["label_id"])):
                x0, y0, w, h = xyxy_to_xywh(x["bbox"])
                want = [(x0 + w / 2) / img["width"], (y0 + h / 2) / img["height"], w / img["width"], h / img["height"]]
                if task != "segment":  # segment: Ultralytics derives the box from the polygon
                    np.testing.assert_allclose(lab["bboxes"][k], want, atol=1e-5)
                assert int(lab["cls"][k][0]) == CATS.index(x["category"])
                if task == "segment":
                    assert len(lab["segments"]) == len(mine) and lab["segments"][k].shape[1] == 2
                if task == "pose":
                    assert lab["keypoints"].shape == (len(mine), 3, 3)
            seen_instances += len(lab["cls"])
        seen_images += len(ds.labels)
        assert ne == sum(1 for r in ours if not any(x["image_id"] == r["image_id"] and not x.get("iscrowd")
                                                     for x in released.values()))
    assert seen_images == 3 and manifest["counts"]["images"] == 4 and manifest["counts"]["yolo_excluded_images"] == 1
    assert seen_instances == 2 and coco_crowd == 1  # the crowd region is in COCO only
    assert any("hold only crowd regions" in w for w in manifest["warnings"])

