"""The guidelines a reviewer worked under reach every human label: read from the
``guidelines_sha256`` field of the task data labelloop sent (Label Studio 1.23.2 exports it back,
JSON and JSON-MIN fixtures), else the image's review export; a bad value is ignored, never a
reject; a HUMAN_LABELS table written before the column existed still reads."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage

from labelloop import tables
from labelloop.formats.labelstudio import parse_export
from labelloop.review.importer import import_review, register_import_tasks
from labelloop.tables.schemas import HUMAN_LABELS
from support.helpers import ls_fixtures

FX = ls_fixtures()
SK = Path(skimage.__file__).parent / "data"
SIZES = {"astronaut.png": (512, 512), "chelsea.png": (451, 300), "coffee.png": (600, 400)}
SRC = "label-studio/project-1"
G1 = hashlib.sha256(b"# guidelines v1\n").hexdigest()
G2 = hashlib.sha256(b"# guidelines v2\n").hexdigest()


def sha(name: str) -> str:
    return hashlib.sha256((SK / name).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def images():
    out = []
    for n, (w, h) in SIZES.items():
        row = {k: None for k in ("batch", "origin_path", "ingest_seq", "format", "mode", "bytes", "exif_orientation",
                                 "phash", "near_duplicate_of", "reject_reason")}
        out.append(row | {"image_id": sha(n), "uri": f"inbox/b1/photos/{n}", "source_path": n, "width": w,
                          "height": h, "status": "ok", "duplicate_of": None})
    return out


@pytest.fixture(scope="module")
def exported(images):
    rows, rejects = register_import_tasks(json.loads((FX / "import_tasks.json").read_text()), source=SRC, images=images)
    assert rejects == []
    return rows


def do_import(obj, images, exported, **kw):
    return import_review(parse_export(obj), file_name="export.json", import_sha256="0" * 64, source=SRC,
                         images=images, exported=exported, known_review_keys=set(),
                         categories=["person", "face", "cat"], **kw)


def with_data(tasks: list[dict], value) -> list[dict]:
    tasks = copy.deepcopy(tasks)
    for t in tasks:
        t["data"]["guidelines_sha256"] = value  # as Label Studio exports the data labelloop sent
    return tasks


def test_the_json_export_carries_the_guidelines_to_every_human_label(images, exported):
    tasks = json.loads((FX / "export_json.json").read_text(encoding="utf-8"))
    res = do_import(with_data(tasks, G1), images, exported, guidelines_by_image={sha("astronaut.png"): G2})
    assert res["rejects"] == [] and len(res["reviews"]) == 3
    assert res["human_labels"] and {h["guidelines_sha256"] for h in res["human_labels"]} == {G1}  # the task's own
    t = tables.to_table(res["human_labels"], HUMAN_LABELS)
    assert set(t.column("guidelines_sha256").to_pylist()) == {G1}


def test_json_min_carries_it_too(images, exported):
    items = json.loads((FX / "export_json_min.json").read_text(encoding="utf-8"))
    for it in items:
        it["guidelines_sha256"] = G2  # JSON-MIN: data fields at the top level
    res = do_import(items, images, exported)
    assert res["rejects"] == [] and {h["guidelines_sha256"] for h in res["human_labels"]} == {G2}


def test_without_the_field_the_image_s_export_decides_and_unknown_images_get_none(images, exported):
    tasks = json.loads((FX / "export_json.json").read_text(encoding="utf-8"))
    assert all("guidelines_sha256" not in t["data"] for t in tasks)  # the fixture: tasks sent before this field
    res = do_import(tasks, images, exported, guidelines_by_image={sha("astronaut.png"): G2})
    by_image = {h["image_id"]: h["guidelines_sha256"] for h in res["human_labels"]}
    assert by_image[sha("astronaut.png")] == G2
    assert by_image[sha("chelsea.png")] is None  # no export of it known


@pytest.mark.parametrize("bad", ["abc", 12345, G1.upper(), {"sha": G1}])
def test_a_malformed_value_is_ignored_not_a_reject(images, exported, bad):
    tasks = json.loads((FX / "export_json.json").read_text(encoding="utf-8"))
    res = do_import(with_data(tasks, bad), images, exported, guidelines_by_image={sha("astronaut.png"): G2})
    assert res["rejects"] == [] and len(res["reviews"]) == 3
    assert {h["image_id"]: h["guidelines_sha256"] for h in res["human_labels"]}[sha("astronaut.png")] == G2


def test_none_recorded_for_a_workspace_without_guidelines_is_kept(images, exported):
    tasks = json.loads((FX / "export_json.json").read_text(encoding="utf-8"))
    res = do_import(with_data(tasks, "none"), images, exported)
    assert {h["guidelines_sha256"] for h in res["human_labels"]} == {"none"}


def test_a_human_labels_table_without_the_column_still_reads(images, exported, tmp_path):
    tasks = json.loads((FX / "export_json.json").read_text(encoding="utf-8"))
    rows = do_import(tasks, images, exported)["human_labels"]
    old = pa.schema([f for f in HUMAN_LABELS if f.name != "guidelines_sha256"])
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in old.names} for r in rows], schema=old),
                   tmp_path / "human_labels.parquet")
    back = tables.read_rows(tmp_path / "human_labels.parquet", HUMAN_LABELS)
    assert len(back) == len(rows) and all(r["guidelines_sha256"] is None for r in back)
    assert [r["annotation_id"] for r in back] == [r["annotation_id"] for r in rows]
