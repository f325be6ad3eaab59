"""The Label Studio 1.23.2 fixtures through a real workspace: the fixture photos ingested,
import_tasks.json registered as the export we sent, the exports imported through Dagster."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from labelloop import tables
from labelloop.geometry.boxes import iou
from labelloop.review.importer import import_inbox
from labelloop.review.store import review_store
from labelloop.tables.schemas import LABELS
from labelloop.workspace.layout import Workspace
from labelloop.workspace.repo import read_labels
from support.helpers import cli, ls_fixtures, skimage_data

FX = ls_fixtures()
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("fxws")
    src = root / "src" / "photos"
    src.mkdir(parents=True)
    for n in PHOTOS:
        shutil.copyfile(skimage_data() / n, src / n)
    wsroot = root / "ws"
    cli(wsroot, "init")
    cli(wsroot, "ingest", str(src), "--batch", "fixture")
    cli(wsroot, "run")
    out = cli(wsroot, "register-export", str(FX / "import_tasks.json"), "--source", "label-studio/project-1")
    assert "3 predictions registered, 0 tasks rejected" in out.output
    cli(wsroot, "import-review", str(FX / "export_json.json"))
    return Workspace.at(wsroot)


def _sha(name):
    return hashlib.sha256((skimage_data() / name).read_bytes()).hexdigest()


def _by_image(rows):
    out = {}
    for r in rows:
        out.setdefault(r["image_id"], []).append(r)
    return out


def test_reviewer_actions_of_notes_md(ws):
    """NOTES.md: astronaut face moved + person corrected, chelsea face relabeled cat and
    enlarged, coffee a labeled negative; the reviewer is pseudonymous."""
    store = review_store(ws)
    human = _by_image(store.current_human_labels())
    astro = {h["category"]: h for h in human[_sha("astronaut.png")]}
    assert astro["face"]["action"] == "corrected" and astro["person"]["action"] == "corrected"
    assert astro["face"]["bbox"] == pytest.approx([176, 55, 274, 180], abs=1e-6)
    assert astro["person"]["bbox"] == pytest.approx([20, 15, 365, 512], abs=1e-6)
    assert iou(astro["person"]["bbox"], [30, 40, 360, 512]) == pytest.approx(0.9084, abs=1e-3)
    (cat,) = human[_sha("chelsea.png")]
    assert (cat["category"], cat["action"]) == ("cat", "corrected")
    assert cat["bbox"] == pytest.approx([0, 0, 451, 300])
    assert _sha("coffee.png") not in human
    assert {h["annotator"] for rows in human.values() for h in rows} == {"ls-user-1"}
    latest = store.latest_reviews()
    assert latest[_sha("coffee.png")]["n_regions"] == 0


def test_labels_are_the_human_labels_and_coffee_is_a_negative(ws):
    labels, resolved = read_labels(ws)
    res = {r["image_id"]: r for r in resolved}
    assert res[_sha("coffee.png")]["resolution"] == "reviewed" and res[_sha("coffee.png")]["n_labels"] == 0
    by = _by_image(labels)
    assert sorted(lab["category"] for lab in by[_sha("astronaut.png")]) == ["face", "person"]
    assert all(lab["origin"] == "human" for lab in labels)


def test_importing_twice_or_a_json_min_of_the_same_work_changes_nothing(ws):
    before_reviews = review_store(ws).reviews()
    before_labels = (ws.table("labels") / "labels.parquet").read_bytes()
    out = cli(ws.root, "import-review", str(FX / "export_json.json"))
    assert "0 new reviews, 3 already imported" in out.output
    out = cli(ws.root, "import-review", str(FX / "export_json_min.json"), "--source", "label-studio/project-1")
    assert "0 new reviews, 3 already imported" in out.output
    assert review_store(ws).reviews() == before_reviews
    assert (ws.table("labels") / "labels.parquet").read_bytes() == before_labels


def test_a_json_min_without_source_is_imported_with_a_warning_naming_the_project(ws, tmp_path):
    from labelloop.review.importer import import_file

    before = review_store(ws).reviews()
    check = import_file(ws, FX / "export_json_min.json", dry_run=True)  # what `import-review` checks first
    assert check["source"] == "label-studio/export_json_min" and check["reviews"] == 3
    assert check["warnings"] == [
        "3 of its images were reviewed before under label-studio/project-1; this file names no Label Studio "
        "project (JSON-MIN), so it was imported as label-studio/export_json_min: if it is the same project, "
        "import it again with --source label-studio/project-1"]
    assert import_file(ws, FX / "export_json_min.json", source="label-studio/project-1", dry_run=True)["warnings"] == []
    assert import_file(ws, FX / "export_json.json", dry_run=True)["warnings"] == []  # names its project
    assert review_store(ws).reviews() == before


def test_a_reexport_with_rewritten_fields_changes_nothing(ws, tmp_path):
    import json

    data = json.loads((FX / "export_json.json").read_text())
    for t in data:
        t["updated_at"] = "2026-12-01T00:00:00Z"
        t["total_annotations"] = 9
        for a in t["annotations"]:
            if a.get("prediction"):
                a["prediction"]["created_ago"] = "3 days"
    p = tmp_path / "project-1-at-2026-12-01.json"
    p.write_text(json.dumps(data))
    out = cli(ws.root, "import-review", str(p))
    assert "0 new reviews, 3 already imported" in out.output
    assert len(review_store(ws).reviews()) == 3


def test_release_holds_the_reviewed_images(ws):
    out = cli(ws.root, "release")
    assert "released dataset-v1: 3 images, 3 labels" in out.output
    rows = tables.read_rows(ws.release_dir / "labels.parquet", LABELS)
    assert sorted(r["category"] for r in rows) == ["cat", "face", "person"]
    assert (ws.release_dir / "manifest.json").is_file()


def test_an_exception_a_parser_did_not_foresee_rejects_that_file_alone(tmp_path, monkeypatch):
    """A parser bug a hostile file could trigger (here an OverflowError / IndexError raised inside
    the parser) rejects that one file with its name and the error; the inbox import goes on."""
    from labelloop.review import importer
    from labelloop.workspace.layout import Workspace
    from support.helpers import cli

    ws_dir = tmp_path / "ws"
    cli(ws_dir, "init")
    ws = Workspace.at(ws_dir)
    for name in ("a.json", "b.json"):
        (ws.review_inbox / name).write_text("[]")
    real = importer.read_review_file
    for exc in (OverflowError("int too large"), IndexError("list index out of range"), MemoryError()):
        def boom(path, *a, _exc=exc, **k):
            if path.name == "a.json":
                raise _exc
            return real(path, *a, **k)

        monkeypatch.setattr(importer, "read_review_file", boom)
        out = {r["file"].rsplit("/", 1)[1]: r for r in import_inbox(ws)["files"]}
        assert type(exc).__name__ in out["a.json"]["error"] and "a.json" in out["a.json"]["error"]
        assert "b.json" in out and type(exc).__name__ not in (out["b.json"].get("error") or "")
