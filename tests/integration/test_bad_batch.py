"""Bad input through a real workspace: every bad file gets a rejected row with its reason, the
rest of the batch completes, and nothing stored before is lost (invariant 6)."""

from __future__ import annotations

import json

import pytest

from labelloop.workspace.layout import Workspace
from support.helpers import cli, make_bad_folder


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    expected = make_bad_folder(base / "incoming")
    root = base / "ws"
    cli(root, "init")
    out = cli(root, "ingest", str(base / "incoming"), "--batch", "bad-1")
    assert "batch bad-1: 12 copied, 0 already ingested, 0 skipped" in out.output
    out = cli(root, "run")
    st = json.loads(cli(root, "status", "--json").output)
    return Workspace.at(root), expected, {i["source_path"]: i for i in st["batches"][0]["images"]}, out.output


def test_each_bad_file_gets_its_row(batch):
    _, expected, rows, _ = batch
    assert set(rows) == set(expected)
    for path, want in expected.items():
        row = rows[path]
        if want.startswith("ok"):
            assert row["status"] == "ok", (path, row["reject_reason"])
            assert f"ok {row['width']}x{row['height']}" == want, path
        elif want.startswith("dup"):
            assert row["duplicate_of"] == want[4:]
            assert row["image_id"] == rows[want[4:]]["image_id"]
        else:
            assert row["status"] == "rejected" and row["reject_reason"].startswith(want + ":"), (path, row)


def test_the_rest_of_the_batch_is_routed_and_exported(batch):
    ws, expected, rows, out = batch
    assert "batch bad-1 [ran: raw_images not materialized]: 8 ok, 4 rejected" in out
    routed = [p for p, r in rows.items() if r["route"]]
    assert len(routed) == 7  # 8 ok files, one exact duplicate not routed again
    tasks = json.loads((ws.review_out / "bad-1" / "tasks.json").read_text())
    assert all("image_id" in t["data"] for t in tasks)


def test_a_later_bad_batch_keeps_what_was_stored(batch, tmp_path):
    ws, _, rows, _ = batch
    before = (ws.table("raw_images") / "bad-1.parquet").read_bytes()
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cli(ws.root, "ingest", str(tmp_path / "more"), "--batch", "bad-2")
    cli(ws.root, "run")
    assert (ws.table("raw_images") / "bad-1.parquet").read_bytes() == before
    st = json.loads(cli(ws.root, "status", "--json").output)
    (b2,) = [b for b in st["batches"] if b["name"] == "bad-2"]
    assert b2["images"][0]["status"] == "rejected"
    assert b2["images"][0]["reject_reason"].split(":")[0] in {"corrupt", "truncated"}


def test_cli_errors_are_one_line(tmp_path):
    res = cli(tmp_path / "nowhere", "status", ok=False)
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].startswith("labelloop: error: ") and "labelloop init" in res.output
    cli(tmp_path / "w", "init")
    res = cli(tmp_path / "w", "ingest", str(tmp_path), "--batch", "../escape", ok=False)
    assert res.exit_code != 0 and "invalid batch name '../escape'" in res.output
    (tmp_path / "w" / "labelloop.yaml").write_text("categories: []\n")
    res = cli(tmp_path / "w", "run", ok=False)
    assert res.exit_code != 0 and "labelloop.yaml" in res.output and "at least one category" in res.output


def test_nothing_to_release_nothing_new_to_ingest_and_a_bad_export_left_out(tmp_path):
    import shutil

    from support.helpers import skimage_data

    root = tmp_path / "w"
    cli(root, "init")
    res = cli(root, "release", ok=False)
    assert res.exit_code == 3 and "nothing to release: no image is resolved yet" in res.output
    (tmp_path / "p").mkdir()
    shutil.copyfile(skimage_data() / "coffee.png", tmp_path / "p" / "coffee.png")
    cli(root, "ingest", str(tmp_path / "p"), "--batch", "one")
    out = cli(root, "ingest", str(tmp_path / "p"), "--batch", "two")
    assert "0 copied, 1 already ingested" in out.output
    assert [b["name"] for b in json.loads(cli(root, "status", "--json").output)["batches"]] == ["one"]
    bad = tmp_path / "export.json"
    bad.write_text("{not json")
    res = cli(root, "import-review", str(bad), ok=False)
    assert res.exit_code == 1 and "export.json" in res.output and "not valid JSON" in res.output
    assert not (root / "review_inbox" / "export.json").exists()


def test_tiny_and_thin_images_symlinks_and_non_utf8_names(tmp_path):
    """A 1x1 image and a 8000x250 panorama are pre-labeled without crashing OpenCV's HOG (which
    corrupts memory below its 64x128 window); a symlink is never followed (it could point
    outside the folder); a file name that is not UTF-8 is skipped with its reason."""
    import os

    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (1, 1)).save(src / "tiny.png")
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 255, (250, 8000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(src / "pano.png")  # textured: not a near duplicate of tiny.png
    os.symlink("/etc/hostname", src / "link.jpg")
    Image.new("RGB", (64, 64)).save(os.fsencode(src) + b"/bad\xff.png")
    root = tmp_path / "ws"
    cli(root, "init")
    out = cli(root, "ingest", str(src), "--batch", "odd")
    assert "2 copied, 0 already ingested, 1 skipped" in out.output
    assert "file name is not valid UTF-8" in out.output
    assert not (root / "inbox" / "odd" / "link.jpg").exists()
    cli(root, "run")
    st = json.loads(cli(root, "status", "--json").output)
    rows = {i["source_path"]: i for i in st["batches"][0]["images"]}
    assert rows["tiny.png"]["route"] == "human_review" and rows["pano.png"]["route"] == "human_review"
