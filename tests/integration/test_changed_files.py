"""A file replaced in the inbox after raw_images registered it (same path, other bytes) is never
used under the old image_id: pre-labeling reports it as changed and predicts the rest, a release
refuses to ship it and leaves the current release as it was."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from labelloop.images.files import ImageError, check_image_id, load_rgb, save_release_copy
from labelloop.ingest.scan import scan_batch
from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.prelabel.backends.opencv import OpenCVPreLabeler
from labelloop.prelabel.protocol import iter_predictions
from labelloop.prelabel.stage import prelabel_batch
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace
from support.foundation import models, workspace  # noqa: F401 - the tiny foundation models fixture
from support.helpers import cli, skimage_data

SK = skimage_data()


def _replace(ws: Workspace, batch: str, name: str) -> str:
    """Overwrite inbox/<batch>/<name> with another photo's pixels; returns the row's image_id."""
    row = next(r for r in repo.images_to_label(ws, batch) if r["source_path"] == name)
    Image.open(SK / "camera.png").convert("RGB").resize((200, 150)).save(ws.locate(row["uri"]), format="PNG")
    return row["image_id"]


def test_image_id_checks_name_the_file_and_both_digests(tmp_path):
    p = tmp_path / "a.png"
    shutil.copyfile(SK / "astronaut.png", p)
    good = __import__("hashlib").sha256(p.read_bytes()).hexdigest()
    check_image_id(p, good)
    assert load_rgb(p, good).size == (512, 512)
    assert save_release_copy(p, tmp_path / "out", "x", image_id=good) == "x.png"
    shutil.copyfile(SK / "coffee.png", p)
    for call in (lambda: check_image_id(p, good), lambda: load_rgb(p, good),
                 lambda: save_release_copy(p, tmp_path / "out2", "x", image_id=good)):
        with pytest.raises(ImageError, match=r"a\.png: changed: the file's sha256 is [0-9a-f]{12}\.\.\., not the image_id "
                                             + good[:12]) as e:
            call()
        assert e.value.code == "changed"
    assert not (tmp_path / "out2" / "x.png").exists()


def _workspace(tmp_path, batch: str) -> Workspace:
    """A new workspace with astronaut, chelsea and coffee ingested as ``batch``."""
    root = tmp_path / "ws"
    cli(root, "init")
    src = tmp_path / "src"
    src.mkdir()
    for n in ("astronaut.png", "chelsea.png", "coffee.png"):
        shutil.copyfile(SK / n, src / n)
    cli(root, "ingest", str(src), "--batch", batch)
    return Workspace.at(root)


def test_prelabels_skip_a_replaced_file_with_the_reason(tmp_path):
    ws = _workspace(tmp_path, "b1")
    scan_batch(ws, "b1")
    old_id = _replace(ws, "b1", "chelsea.png")
    model = OpenCVPreLabeler(ws.config())
    out = prelabel_batch(ws, "b1", model, run_id="r1")
    assert len(out["failed"]) == 1 and out["failed"][0].startswith("chelsea.png: ")
    assert "changed: the file's sha256 is" in out["failed"][0]
    done = repo.done_image_ids(repo.prelabel_dir(ws, "b1", model.model_id))
    assert old_id not in done and len(done) == 2

    class Streaming:  # a PreLabeler whose predict_files does not take image_ids: checked first
        model_id = model.model_id

        def predict_files(self, paths):
            for i, p in enumerate(paths):
                yield i, model.predict([load_rgb(p)])[0]

    rows = [r for r in repo.images_to_label(ws, "b1")]
    got = dict(iter_predictions(Streaming(), [ws.locate(r["uri"]) for r in rows], [r["image_id"] for r in rows]))
    bad = [i for i, r in enumerate(rows) if r["image_id"] == old_id]
    assert isinstance(got[bad[0]], ImageError) and got[bad[0]].code == "changed"
    assert all(isinstance(v, list) for i, v in got.items() if i not in bad) and len(got) == 3


def test_foundation_loader_reports_a_replaced_file(tmp_path, models):  # noqa: F811
    ws = workspace(tmp_path, "ws", models)
    scan_batch(ws, "b1")
    rows = repo.images_to_label(ws, "b1")
    old_id = _replace(ws, "b1", "coffee.png")
    results = dict(FoundationPreLabeler(ws.config(), ws.root).predict_files(
        [ws.locate(r["uri"]) for r in rows], image_ids=[r["image_id"] for r in rows]))
    for i, r in enumerate(rows):
        if r["image_id"] == old_id:
            assert isinstance(results[i], ImageError) and "coffee.png: changed" in str(results[i])
        else:
            assert isinstance(results[i], list)


def test_release_refuses_a_replaced_file_until_its_bytes_are_back(tmp_path):
    from labelloop.workspace import versioning as V
    from support.helpers import ls_fixtures

    fx = ls_fixtures()
    ws = _workspace(tmp_path, "fixture")
    root = ws.root
    cli(root, "run")
    cli(root, "register-export", str(fx / "import_tasks.json"), "--source", "label-studio/project-1")
    cli(root, "import-review", str(fx / "export_json.json"))
    inbox_file = ws.batch_dir("fixture") / "astronaut.png"
    _replace(ws, "fixture", "astronaut.png")
    res = cli(root, "release", ok=False)
    assert res.exit_code != 0
    assert "astronaut.png: changed: the file's sha256 is" in (res.output + str(res.exception))
    assert V.release_tags(ws.root) == [] and not (ws.release_dir / "manifest.json").exists()
    shutil.copyfile(SK / "astronaut.png", inbox_file)  # the registered bytes are back
    cli(root, "release")
    assert [t["tag"] for t in V.release_tags(ws.root)] == ["dataset-v1"]
