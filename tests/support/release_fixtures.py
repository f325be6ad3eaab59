"""A small release's inputs on real photos (one with EXIF orientation 6): the module-scoped
``photos`` fixture, :func:`release_inputs` and :func:`build_files`, shared by the release-writer
tests and the Ultralytics reader test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelloop.geometry.masks import encode_rle
from labelloop.images.files import inspect_image
from labelloop.release.build import ReleaseInputs, build_release, plan_release
from labelloop.release.splits import save_assignments
from support.helpers import skimage_data

CATS = ["person", "cat"]


KP = {"person": {"keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2], [1, 3]]}}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A workspace-like root with 4 real photos (one with EXIF orientation 6) and their IMAGES rows."""
    root = tmp_path_factory.mktemp("build")
    sk = skimage_data()
    inbox = root / "inbox" / "b1"
    inbox.mkdir(parents=True)
    for name in ("astronaut.png", "coffee.png", "rocket.jpg"):
        shutil.copyfile(sk / name, inbox / name)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(sk / "chelsea.png").convert("RGB").save(inbox / "chelsea_rotated.jpg", exif=exif, quality=92)
    rows = []
    for seq, f in enumerate(sorted(inbox.iterdir()), start=1):
        info = inspect_image(f, 50_000_000)
        rows.append({**info, "uri": f.relative_to(root).as_posix(), "batch": "b1", "source_path": f.name,
                     "origin_path": str(f), "ingest_seq": seq, "duplicate_of": None, "near_duplicate_of": None})
    return root, rows


def release_inputs(images: list[dict], task: str = "detect") -> ReleaseInputs:
    by = {r["source_path"]: r for r in images}
    astro, cat = by["astronaut.png"]["image_id"], by["chelsea_rotated.jpg"]["image_id"]
    mask = np.zeros((451, 300), np.uint8)  # chelsea after the EXIF rotation: 300 wide, 451 high
    mask[100:300, 50:250] = 1
    labels = [
        {"label_id": "lb-1", "image_id": astro, "category": "person", "bbox": [19.0, 15.0, 363.0, 512.0],
         "origin": "human", "annotator": "ls-user-3", "action": "added", "review_id": "rv-1",
         "annotation_id": "hl-1", "reviewed_at": "2026-11-20T10:00:01Z", "route": "human_review",
         "route_reason": "low score", "policy_id": "policy-x", "keypoints": [200, 100, 2, 180, 90, 2, 230, 90, 1]},
        {"label_id": "lb-2", "image_id": cat, "category": "cat", "bbox": [50.0, 100.0, 250.0, 300.0],
         "mask": encode_rle(mask), "origin": "model", "score": 0.91, "model_id": "m@1", "checkpoint_sha256": "c" * 64,
         "prediction_id": "pr-2", "action": "auto_accepted", "route": "qa_sample", "route_reason": "QA sample",
         "policy_id": "policy-x"},
    ]
    resolved = [{"image_id": r["image_id"], "resolution": "reviewed" if r["image_id"] != cat else "auto_accepted",
                 "n_labels": 0, "review_id": "rv-1" if r["image_id"] == astro else None, "route": None} for r in images]
    return ReleaseInputs(
        images=images, resolved=resolved, labels=labels, categories=CATS, ratios={"train": 0.5, "val": 0.25, "test": 0.25},
        yolo_task=task, keypoints=KP,
        reviews={"rv-1": {"review_id": "rv-1", "source": "label-studio/project-7", "task_id": "101",
                          "tool_annotation_id": "9", "annotator": "ls-user-3", "updated_at": "2026-11-20T10:00:01Z"}},
        human_labels={("hl-1", "rv-1"): {"import_sha256": "d" * 64}},
        predictions={"pr-2": {"prompt": "a cat", "run_id": "run-1234"}},
        queue={cat: {"route": "qa_sample", "reason": "QA sample", "policy_id": "policy-x"}},
        thresholds={"person": (0.3, 0.8), "cat": (0.3, 0.8)}, policy_id="policy-x")


def build_files(root: Path, out: Path, inputs: ReleaseInputs, reg: Path) -> dict:
    plan = plan_release(inputs, reg / "splits.parquet", reg / "coco_ids.parquet")
    manifest = build_release(out, root, inputs, plan)
    plan.ids.save()
    save_assignments(reg / "splits.parquet", plan.split_rows)
    return manifest


def with_crowd(images: list[dict], task: str = "detect") -> ReleaseInputs:
    """:func:`release_inputs` plus a crowd region that is coffee.png's only object (so coffee is in
    the COCO files and out of the YOLO view), with ``cat`` as the mask category."""
    inputs = release_inputs(images, task)
    coffee = next(r for r in images if r["source_path"] == "coffee.png")
    inputs.labels.append({"label_id": "lb-crowd", "image_id": coffee["image_id"], "category": "person",
                          "bbox": [10.0, 20.0, 300.0, 200.0], "iscrowd": True, "origin": "human",
                          "annotator": "ls-user-3", "action": "added", "review_id": "rv-1", "annotation_id": "hl-9",
                          "reviewed_at": "2026-11-20T10:00:01Z", "route": "human_review", "route_reason": "r",
                          "policy_id": "policy-x"})
    inputs.mask_categories = ["cat"]
    return inputs
