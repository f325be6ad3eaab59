"""build_release + validation on write, on real photos (no Dagster): every layout, the provenance
tables, byte determinism, stable ids and splits across builds, and each kind of damaged file."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import yaml
from PIL import Image

from labelloop import tables
from labelloop.release.build import build_release, plan_release
from labelloop.release.check import ReleaseInvalid, check_release, validate_release
from labelloop.tables.schemas import LABELS, RELEASE_IMAGES, RELEASE_LINEAGE, SPLIT_ASSIGNMENTS
from support.release_fixtures import CATS, KP, build_files, photos, release_inputs  # noqa: F401 (photos is a fixture)


@pytest.mark.parametrize("task", ["detect", "segment", "pose"])
def test_every_layout_builds_and_validates(photos, tmp_path, task):
    root, images = photos
    out = tmp_path / "rel"
    manifest = build_files(root, out, release_inputs(images, task), tmp_path / "reg")
    validate_release(out, CATS, task, 3 if task == "pose" else 0)
    assert manifest["yolo_task"] == task and manifest["counts"]["images"] == 4 and manifest["counts"]["labels"] == 2
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert (data.get("kpt_shape"), data.get("flip_idx")) == (([3, 3], [0, 2, 1]) if task == "pose" else (None, None))
    txt = {p.name: p.read_text() for p in (out / "labels").rglob("*.txt")}
    assert len(txt) == 4 and sum(1 for t in txt.values() if t == "") == 2  # coffee and rocket: negatives
    fields = sorted(len(t.split()) for t in txt.values() if t)
    assert fields == {"detect": [5, 5], "segment": [9, 9], "pose": [14, 14]}[task]


def test_provenance_tables_and_exif(photos, tmp_path):
    root, images = photos
    out = tmp_path / "rel"
    build_files(root, out, release_inputs(images), tmp_path / "reg")
    imgs = {r["source_path"]: r for r in tables.read_rows(out / "images.parquet", RELEASE_IMAGES)}
    rot = imgs["chelsea_rotated.jpg"]
    assert (rot["width"], rot["height"], rot["exif_orientation"]) == (300, 451, 6)
    with Image.open(out / rot["file_name"]) as im:  # the EXIF-applied copy, re-encoded without EXIF
        assert im.size == (300, 451) and im.format == "PNG"
    assert imgs["astronaut.png"]["annotator"] == "ls-user-3" and imgs["astronaut.png"]["review_task_id"] == "101"
    assert rot["qa_sample"] is True and rot["model_id"] == "m@1"
    lin = {r["label_id"]: r for r in tables.read_rows(out / "lineage.parquet", RELEASE_LINEAGE)}
    m = lin["lb-2"]
    assert (m["prompt"], m["label_run_id"], m["threshold_low"], m["threshold_high"], m["exif_transposed"],
            m["qa_sample"], m["split"], m["file_name"]) == ("a cat", "run-1234", 0.3, 0.8, True, True, rot["split"],
                                                            rot["file_name"])
    h = lin["lb-1"]
    assert (h["review_source"], h["review_task_id"], h["tool_annotation_id"], h["import_sha256"], h["prompt"],
            h["exif_transposed"]) == ("label-studio/project-7", "101", "9", "d" * 64, None, False)
    coco = json.loads((out / "annotations" / f"instances_{h['split']}.json").read_text())
    ann = next(a for a in coco["annotations"] if a["label_id"] == "lb-1")
    assert ann["id"] == h["coco_annotation_id"] and "keypoints" not in ann  # keypoints: person_keypoints_<split>
    kp = json.loads((out / "annotations" / f"person_keypoints_{h['split']}.json").read_text())
    ann = next(a for a in kp["annotations"] if a["label_id"] == "lb-1")
    assert ann["id"] == h["coco_annotation_id"] and ann["num_keypoints"] == 3
    assert [c["name"] for c in kp["categories"]] == ["person"] and kp["categories"][0]["keypoints"] == KP["person"]["keypoints"]
    labels = tables.read_rows(out / "labels.parquet", LABELS)
    assert [r["keypoints"] for r in labels if r["label_id"] == "lb-1"] == [[200, 100, 2, 180, 90, 2, 230, 90, 1]]


def test_same_inputs_same_bytes_and_stable_ids_and_splits(photos, tmp_path):
    root, images = photos
    reg = tmp_path / "reg"
    m1 = build_files(root, tmp_path / "a", release_inputs(images), reg)
    m2 = build_files(root, tmp_path / "b", release_inputs(images), reg)
    assert m1 == m2
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in m1["files"])
    # a third image of the cat's group and a new label: old ids and splits stay, new ones follow
    inputs = release_inputs(images)
    inputs.labels.append(dict(inputs.labels[0], label_id="lb-0", category="cat", keypoints=None))
    m3 = build_files(root, tmp_path / "c", inputs, reg)
    old = {r["label_id"]: r for r in tables.read_rows(tmp_path / "a" / "lineage.parquet", RELEASE_LINEAGE)}
    new = {r["label_id"]: r for r in tables.read_rows(tmp_path / "c" / "lineage.parquet", RELEASE_LINEAGE)}
    for lid in ("lb-1", "lb-2"):
        assert (new[lid]["coco_annotation_id"], new[lid]["coco_image_id"], new[lid]["split"]) == \
               (old[lid]["coco_annotation_id"], old[lid]["coco_image_id"], old[lid]["split"])
    assert new["lb-0"]["coco_annotation_id"] == 3
    assert m3["content_sha256"] != m1["content_sha256"]


def _damage_bbox(out):
    f = next((out / "annotations").glob("instances_*.json"))
    obj = json.loads(f.read_text())
    ann = obj["annotations"][0]
    img = next(i for i in obj["images"] if i["id"] == ann["image_id"])
    ann["bbox"] = [0, 0, img["width"] + 50, 10]
    f.write_text(json.dumps(obj))
    return f"{f.relative_to(out).as_posix()}: annotation {ann['id']}: bbox"


def _damage_image(out):
    p = next((out / "images").rglob("*.png"))
    p.unlink()
    return f"file '{p.relative_to(out).as_posix()}' does not exist"


def _damage_yolo(out):
    t = next(t for t in (out / "labels").rglob("*.txt") if t.read_text())
    t.write_text("0 0.5 1.5 0.2 0.2 0.3 0.3\n")
    return f"labels/{t.parent.name}/{t.name}: line 1: coordinate outside [0, 1]"


def _damage_extra_txt(out):
    d = next((out / "labels").iterdir())
    (d / "stray.txt").write_text("")
    return f"labels/{d.name}/stray.txt: no image of that name"


def _damage_manifest(out):
    p = out / "data.yaml"
    p.write_text(p.read_text() + "# edited\n")
    return "data.yaml: sha256 differs from manifest.json"


def _damage_json(out):
    f = next((out / "annotations").glob("instances_*.json"))
    f.write_bytes(f.read_bytes()[:100])
    return f"{f.relative_to(out).as_posix()}: pycocotools cannot load it"


def _damage_parquet(out):
    (out / "lineage.parquet").write_bytes(b"PAR1 not really")
    return "lineage.parquet: cannot be read"


@pytest.mark.parametrize("damage", [_damage_bbox, _damage_image, _damage_yolo, _damage_extra_txt, _damage_manifest,
                                    _damage_json, _damage_parquet])
def test_validation_names_the_file_and_the_problem(photos, tmp_path, damage):
    root, images = photos
    out = tmp_path / "rel"
    build_files(root, out, release_inputs(images, "segment"), tmp_path / "reg")
    assert check_release(out, CATS, "segment") == []
    expected = damage(out)
    problems = check_release(out, CATS, "segment")
    assert any(expected in p for p in problems), problems
    with pytest.raises(ReleaseInvalid) as err:
        validate_release(out, CATS, "segment")
    assert expected in str(err.value) and err.value.problems == problems


def test_wrong_layout_or_categories_are_reported(photos, tmp_path):
    root, images = photos
    out = tmp_path / "rel"
    build_files(root, out, release_inputs(images, "detect"), tmp_path / "reg")
    assert any("the pose layout needs 14 fields" in p for p in check_release(out, CATS, "pose", 3))
    assert any("data.yaml: nc / names" in p for p in check_release(out, ["person", "dog"], "detect"))


def test_pose_without_keypoint_categories_is_refused(photos, tmp_path):
    root, images = photos
    inputs = release_inputs(images, "pose")
    inputs.keypoints = {}
    with pytest.raises(ValueError, match="pose needs every category with keypoints"):
        build_files(root, tmp_path / "rel", inputs, tmp_path / "reg")


def test_manifest_lists_every_file_with_its_sha256(photos, tmp_path):
    root, images = photos
    out = tmp_path / "rel"
    m = build_files(root, out, release_inputs(images), tmp_path / "reg")
    present = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert sorted(m["files"]) == present
    assert all(hashlib.sha256((out / f).read_bytes()).hexdigest() == s for f, s in m["files"].items())
    assert m["split_balance"]["images"]["total"] == 4


def test_lost_registries_are_rebuilt_from_the_release(photos, tmp_path):
    from labelloop.release.cut import seed_registries
    from labelloop.workspace.layout import Workspace
    from labelloop.workspace.repo import registry_paths

    root, images = photos
    ws = Workspace.at(tmp_path / "ws")
    splits_path, ids_path = registry_paths(ws)
    first = build_files(root, ws.release_dir, release_inputs(images), splits_path.parent)
    shutil.rmtree(splits_path.parent)  # tables/release lost
    seed_registries(ws)
    again = build_files(root, tmp_path / "again", release_inputs(images), splits_path.parent)
    assert again["content_sha256"] == first["content_sha256"]  # same splits, same COCO ids, same bytes
    rows = tables.read_rows(splits_path, SPLIT_ASSIGNMENTS)
    assert {r["reason"] for r in rows} == {"seeded from release"}


def test_lineage_asset_without_a_release_fails_clearly(tmp_path):
    import dagster as dg

    from assets.lineage import lineage
    from labelloop.workspace.init import init_workspace
    from labelloop.workspace.layout import Workspace
    from resources.storage import WorkspaceResource

    ws = init_workspace(Workspace.at(tmp_path / "ws"))
    res = dg.materialize([lineage], resources={"storage": WorkspaceResource(root=str(ws.root))},
                         instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not res.success
    (failure,) = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "no release yet: materialize dataset_release first" in failure.step_failure_data.user_failure_data.description


def test_next_release_links_the_images_it_keeps(photos, tmp_path):
    """A release built with the previous one beside it hard-links the image files it keeps (no
    decode, same inode, so DVC need not hash them again), and gives the same bytes and manifest
    as a build from scratch; an image file whose bytes no longer match the previous manifest is
    written again from the source."""
    root, images = photos
    inputs = release_inputs(images)
    first = build_files(root, tmp_path / "v1", inputs, tmp_path / "reg")
    plan = plan_release(inputs, tmp_path / "reg" / "splits.parquet", tmp_path / "reg" / "coco_ids.parquet")
    tampered = next(p for p in sorted((tmp_path / "v1" / "images").rglob("*.png")))
    tampered.unlink()
    tampered.write_bytes(b"\x89PNG damaged")
    second = build_release(tmp_path / "v2", root, inputs, plan, previous=tmp_path / "v1")
    assert second["content_sha256"] == first["content_sha256"]
    kept = [p for p in (tmp_path / "v1" / "images").rglob("*.*") if p != tampered]
    assert len(kept) == 3
    for p in kept:
        assert (tmp_path / "v2" / p.relative_to(tmp_path / "v1")).stat().st_ino == p.stat().st_ino
    redone = tmp_path / "v2" / tampered.relative_to(tmp_path / "v1")
    assert redone.stat().st_ino != tampered.stat().st_ino
    assert hashlib.sha256(redone.read_bytes()).hexdigest() == first["files"][tampered.relative_to(tmp_path / "v1").as_posix()]


def test_sharded_release_holds_the_same_images_and_reuses_shards(photos, tmp_path):
    """release.shard_mb: the image files become tar members (names = COCO file_name) with the
    same bytes as a per-file build; the release validates; the next build reuses the shards."""
    root, images = photos
    flat = build_files(root, tmp_path / "flat", release_inputs(images), tmp_path / "reg")
    inputs = release_inputs(images)
    inputs.shard_mb = 0.05
    plan = plan_release(inputs, tmp_path / "reg" / "splits.parquet", tmp_path / "reg" / "coco_ids.parquet")
    sharded = build_release(tmp_path / "v1", root, inputs, plan)
    validate_release(tmp_path / "v1", CATS, "detect", 0)
    assert not (tmp_path / "v1" / "images").exists()
    from labelloop.release.shards import read_index, read_member

    members = {}
    for split in ("train", "val", "test"):
        if (tmp_path / "v1" / "shards" / split).is_dir():
            members.update({r["name"]: read_member(tmp_path / "v1" / "shards" / split, r)
                            for r in read_index(tmp_path / "v1" / "shards" / split)})
    want = {k: v for k, v in flat["files"].items() if k.startswith("images/")}
    assert {k: hashlib.sha256(v).hexdigest() for k, v in members.items()} == want
    coco_names = {f"images/{p.stem.split('_', 1)[1]}/{im['file_name']}" for p in (tmp_path / "v1" / "annotations").glob("instances_*.json")
                  for im in json.loads(p.read_text())["images"]}
    assert coco_names == set(members)
    again = build_release(tmp_path / "v2", root, inputs, plan, previous=tmp_path / "v1")
    assert again["content_sha256"] == sharded["content_sha256"]
    tars = sorted((tmp_path / "v1" / "shards").rglob("*.tar"))
    assert tars and all((tmp_path / "v2" / t.relative_to(tmp_path / "v1")).stat().st_ino == t.stat().st_ino for t in tars)


@pytest.mark.parametrize("damage", ["duplicate", "outside", "truncated"])
def test_a_damaged_shard_index_or_shard_is_reported_by_validation(photos, tmp_path, damage):
    """A shard index listing a member twice, pointing outside its folder, or a shard cut short."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labelloop.release.check import check_release
    from labelloop.release.shards import INDEX_SCHEMA, read_index

    root, images = photos
    inputs = release_inputs(images)
    inputs.shard_mb = 0.05
    plan = plan_release(inputs, tmp_path / "reg" / "splits.parquet", tmp_path / "reg" / "coco_ids.parquet")
    build_release(tmp_path / "v1", root, inputs, plan)
    folder = next(p for p in sorted((tmp_path / "v1" / "shards").iterdir()) if (p / "index.parquet").is_file())
    rows = read_index(folder)
    if damage == "duplicate":
        rows.append(dict(rows[0]))
        want = f"member {rows[0]['name']!r} is listed more than once"
    elif damage == "outside":
        rows[0]["shard"] = "../" + rows[0]["shard"]
        want = "names a shard outside"
    else:
        (folder / rows[0]["shard"]).write_bytes((folder / rows[0]["shard"]).read_bytes()[: rows[0]["offset"] + 10])
        want = "does not match the index"
    pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), folder / "index.parquet")
    problems = check_release(tmp_path / "v1", CATS, "detect", 0)
    assert any(want in p for p in problems), problems


def test_a_crowd_only_image_is_out_of_the_yolo_view_and_checked(photos, tmp_path):
    from support.release_fixtures import with_crowd

    root, images = photos
    out = tmp_path / "rel"
    inputs = with_crowd(images)
    inputs.ratios = {"train": 0.5, "val": 0.5, "test": 0.0}  # coffee shares train with astronaut
    m = build_files(root, out, inputs, tmp_path / "reg")
    coffee = next(r for r in tables.read_rows(out / "images.parquet", RELEASE_IMAGES) if r["source_path"] == "coffee.png")
    split, stem = coffee["split"], coffee["file_name"].rsplit("/", 1)[1].rsplit(".", 1)[0]
    assert m["counts"]["yolo_excluded_images"] == 1 and not (out / "labels" / split / f"{stem}.txt").exists()
    listed = (out / f"{split}.txt").read_text().splitlines()
    assert f"./{coffee['file_name']}" not in listed and len(listed) == m["counts"]["per_split"][split] - 1
    assert yaml.safe_load((out / "data.yaml").read_text())[split] == f"{split}.txt"
    assert check_release(out, CATS) == []
    (out / "labels" / split / f"{stem}.txt").write_text("")  # an empty label file would call it a negative
    assert any(p.startswith(f"labels/{split}/{stem}.txt: the image holds only crowd regions") for p in check_release(out, CATS))


def test_an_image_ultralytics_drops_is_flagged(photos, tmp_path):
    from labelloop.images.files import inspect_image
    from support.helpers import skimage_data

    root, images = photos
    tiny = root / "inbox" / "b1" / "tiny.png"
    with Image.open(skimage_data() / "astronaut.png") as im:
        im.crop((200, 200, 209, 240)).save(tiny)  # a real 9 x 40 crop: Ultralytics asserts both sides > 9
    row = {**inspect_image(tiny, 50_000_000), "uri": tiny.relative_to(root).as_posix(), "batch": "b1",
           "source_path": "tiny.png", "origin_path": str(tiny), "ingest_seq": 9, "duplicate_of": None,
           "near_duplicate_of": None}
    try:
        m = build_files(root, tmp_path / "rel", release_inputs([*images, row]), tmp_path / "reg")
    finally:
        tiny.unlink()
    assert m["counts"]["tiny_images"] == 1
    assert "1 images have a side under 10 px: Ultralytics' loader drops them" in m["warnings"]
