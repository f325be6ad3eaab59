"""The review inbox against what an attacker and a power cut leave in it: damaged CVAT zips,
symbolic links, and unchanged exports re-parsed on every run (labelloop.review.importer.import_inbox,
labelloop.review.inbox, labelloop.review.files)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from labelloop.review import importer
from labelloop.review.importer import import_file, import_inbox
from labelloop.review.inbox import inbox_files, remember_source
from labelloop.review.store import review_store
from support.helpers import ls_fixtures
from support.review_inbox import (
    DAMAGE,
    cvat_export_bytes,
    cvat_zip_bytes,
    damaged_cvat_zip,
    make_template,
    review_workspace,
)

FX = ls_fixtures()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_template(tmp_path_factory.mktemp("inbox-template") / "ws")


@pytest.fixture
def ws(template, tmp_path):
    return review_workspace(template, tmp_path / "ws")


def _read(summary: dict) -> list[dict]:
    """The per-file summaries of the files read this time (not the unchanged ones)."""
    return [f for f in summary["files"] if not f.get("unchanged")]


def _counting(monkeypatch) -> list[Path]:
    """Record every file :func:`import_inbox` hands to ``import_file`` (the reader's entry point)."""
    calls: list[Path] = []
    real = importer.import_file

    def counted(ws, path, *a, **k):
        calls.append(Path(path))
        return real(ws, path, *a, **k)

    monkeypatch.setattr(importer, "import_file", counted)
    return calls


# ------------------------------------------------------------------------------- damaged zips


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_cvat_zip_is_rejected_alone_with_its_name_and_not_read_again(ws, kind, monkeypatch):
    """Was: zlib.error / RuntimeError / NotImplementedError / BadZipFile out of zipfile, which
    import_file did not catch: the inbox import (every ``run``, every ``import-review``) failed on
    every later run, good files included, with a message that named no file."""
    (ws.review_inbox / "a-damaged.zip").write_bytes(damaged_cvat_zip(kind))
    (ws.review_inbox / "b-good.xml").write_bytes(cvat_export_bytes(task_id=8))
    (ws.review_inbox / "c-export.json").write_bytes((FX / "export_json.json").read_bytes())
    s = import_inbox(ws)
    by = {Path(f["file"]).name: f for f in s["files"]}
    bad = by["a-damaged.zip"]["error"]
    assert "a-damaged.zip" in bad and "\n" not in bad and "damaged zip" in bad, bad
    assert [e for e in s["errors"] if "a-damaged.zip" in e] and all("\n" not in e for e in s["errors"])
    assert by["b-good.xml"].get("error") is None and by["b-good.xml"]["reviews"] == 3
    assert by["c-export.json"].get("error") is None and by["c-export.json"]["reviews"] == 3
    assert {r["source"] for r in review_store(ws).reviews()} == {"cvat/task-8", "label-studio/project-1"}

    calls = _counting(monkeypatch)  # marked: not read again while its bytes are the same
    again = import_inbox(ws)
    assert calls == [] and _read(again) == [] and len(again["unchanged"]) == 3
    assert [e for e in again["errors"] if "a-damaged.zip" in e]  # still reported, not re-read
    assert {Path(f["file"]).name: f.get("error") == bad for f in again["files"]}["a-damaged.zip"]

    (ws.review_inbox / "a-damaged.zip").write_bytes(cvat_zip_bytes(task_id=7))  # repaired: read again
    third = import_inbox(ws)
    assert [p.name for p in calls] == ["a-damaged.zip"]
    (repaired,) = _read(third)
    assert repaired.get("error") is None and repaired["reviews"] == 3 and third["errors"] == []


def test_run_and_import_review_go_on_past_a_damaged_zip_and_a_link(ws, tmp_path, monkeypatch):
    """Was: ``labelloop import-review`` and ``labelloop run`` failed with "resolve: human_labels:
    Error -3 while decompressing data" for as long as the zip stayed in review_inbox/."""
    from pipelines.runner import execute, get_instance
    from support.helpers import cli

    monkeypatch.setenv("DAGSTER_HOME", str(ws.dagster_home))  # restored after the test (the CLI sets it)
    monkeypatch.setenv("LABELLOOP_WORKSPACE", str(ws.root))
    (ws.review_inbox / "a-damaged.zip").write_bytes(damaged_cvat_zip("deflate"))
    os.symlink("/etc/passwd", ws.review_inbox / "passwd.json")
    src = tmp_path / "good.xml"
    src.write_bytes(cvat_export_bytes(task_id=9))
    assert "review_inbox/good.xml: 3 new reviews" in cli(ws.root, "import-review", str(src)).output
    cli(ws.root, "run")
    md = execute(ws, "resolve_job", get_instance(ws)).metadata["human_labels"]
    assert {k: md[k] for k in ("files", "new_reviews", "already_imported", "rejected", "file_errors",
                               "unchanged_files", "refused_links", "reviewed_images")} == {
        "files": 2, "new_reviews": 0, "already_imported": 3, "rejected": 0, "file_errors": 2, "unchanged_files": 2,
        "refused_links": 1, "reviewed_images": 3}


def test_an_unforeseen_exception_of_one_file_never_stops_the_inbox(ws, monkeypatch):
    """Whatever a reader raises for one file (here a KeyError-like parser bug outside the
    malformed-input list) is that file's error; the other files import."""
    (ws.review_inbox / "a.xml").write_bytes(cvat_export_bytes(task_id=5))
    (ws.review_inbox / "b.xml").write_bytes(cvat_export_bytes(task_id=6))
    real = importer.import_file

    def boom(w, path, *a, **k):
        if Path(path).name == "a.xml":
            raise SystemError("reader bug")
        return real(w, path, *a, **k)

    monkeypatch.setattr(importer, "import_file", boom)
    s = import_inbox(ws)
    by = {Path(f["file"]).name: f for f in s["files"]}
    assert "a.xml" in by["a.xml"]["error"] and "SystemError: reader bug" in by["a.xml"]["error"]
    assert by["b.xml"]["reviews"] == 3


# ------------------------------------------------------------------------------- symbolic links

_OPENED: list[str] = []
_WATCH: list[bool] = [False]


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCH[0] and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # records open() calls only while a test sets _WATCH


def test_links_in_the_review_inbox_are_refused_and_never_opened(ws, tmp_path):
    """Was: a link to an export elsewhere was imported, a link to /etc/passwd opened on every run.
    Links are refused as ingest refuses them (a link to a file, to a folder, a file below a
    linked folder), each reported with its reason; the targets are never opened."""
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "export.xml").write_bytes(cvat_export_bytes(task_id=11))
    (outside / "folder" / "below.xml").write_bytes(cvat_export_bytes(task_id=12))
    inbox = ws.review_inbox
    (inbox / "sub").mkdir()
    (inbox / "good.xml").write_bytes(cvat_export_bytes(task_id=7))
    os.symlink(outside / "export.xml", inbox / "elsewhere.xml")
    os.symlink("/etc/passwd", inbox / "passwd.json")
    os.symlink(outside / "folder", inbox / "linked")
    os.symlink(outside / "export.xml", inbox / "sub" / "deeper.zip")
    assert inbox_files(ws) == [inbox / "good.xml"]
    _OPENED.clear()
    _WATCH[0] = True
    try:
        s = import_inbox(ws)
        single = import_file(ws, inbox / "elsewhere.xml")  # an explicit import of a link in the inbox
    finally:
        _WATCH[0] = False
    targets = (str(outside), "/etc/passwd", str(inbox / "elsewhere.xml"), str(inbox / "passwd.json"),
               str(inbox / "linked"), str(inbox / "sub" / "deeper.zip"))
    assert not [p for p in _OPENED if p.startswith(targets)], _OPENED
    assert [Path(f["file"]).name for f in s["files"]] == ["good.xml"] and s["files"][0]["reviews"] == 3
    refused = {line.split(":", 1)[0]: line for line in s["refused"]}
    assert sorted(refused) == ["review_inbox/elsewhere.xml", "review_inbox/linked", "review_inbox/passwd.json",
                               "review_inbox/sub/deeper.zip"]
    assert all("symbolic link" in line and "\n" not in line for line in s["refused"])
    assert "folder" in refused["review_inbox/linked"]
    assert all(any(line in e for e in s["errors"]) for line in s["refused"])
    assert {r["source"] for r in review_store(ws).reviews()} == {"cvat/task-7"}
    assert "symbolic link" in single["error"] and single["reviews"] == 0


# ------------------------------------------------------------------------------- unchanged files


def test_unchanged_inbox_files_are_not_parsed_again_and_changed_ones_are(ws, monkeypatch):
    """Was: every run re-parsed every file of the review inbox (a 195 MB export: 1.13 GiB and
    2 min 43 s each time). The inbox remembers each file's sha256 (with the source it is imported
    under and the project's settings) in .labelloop/review_inbox.json."""
    (ws.review_inbox / "export.json").write_bytes((FX / "export_json.json").read_bytes())
    (ws.review_inbox / "task.xml").write_bytes(cvat_export_bytes(task_id=7))
    t0 = time.perf_counter()
    first = import_inbox(ws)
    t_first = time.perf_counter() - t0
    assert first["new_reviews"] == 6 and first["errors"] == []
    ledger = json.loads((ws.state / "review_inbox.json").read_text())
    assert set(ledger["files"]) == {"review_inbox/export.json", "review_inbox/task.xml"}

    calls = _counting(monkeypatch)
    t0 = time.perf_counter()
    second = import_inbox(ws)
    t_second = time.perf_counter() - t0
    assert calls == [] and _read(second) == [] and second["new_reviews"] == 0 and second["skipped"] == 6
    assert sorted(second["unchanged"]) == ["review_inbox/export.json", "review_inbox/task.xml"]
    print(f"\ninbox import: first {t_first:.3f} s, second (unchanged) {t_second:.3f} s")

    # changed bytes: read again (the same annotations: nothing new, idempotent)
    p = ws.review_inbox / "export.json"
    p.write_bytes(p.read_bytes() + b"\n")
    third = import_inbox(ws)
    assert [c.name for c in calls] == ["export.json"] and _read(third)[0]["skipped"] == 3
    assert third["new_reviews"] == 0 and third["unchanged"] == ["review_inbox/task.xml"]

    # another source named for the file (import-review --source): read again, under that source
    calls.clear()
    remember_source(ws, ws.review_inbox / "task.xml", "cvat/other")
    fourth = import_inbox(ws)
    assert [c.name for c in calls] == ["task.xml"] and _read(fourth)[0]["source"] == "cvat/other"
    assert fourth["new_reviews"] == 3

    # a config change (categories, keypoints): every file is read again
    calls.clear()
    text = ws.config_path.read_text(encoding="utf-8")
    ws.config_path.write_text(text.replace("routing:", "  - name: dog\n    detector: opencv-haar-frontalcatface\n"
                                                       "    prompt: a dog\n    masks: false\nrouting:", 1),
                              encoding="utf-8")
    assert "dog" in ws.config().category_names
    import_inbox(ws)
    assert sorted(c.name for c in calls) == ["export.json", "task.xml"]

    # an explicit import of a file always reads it
    calls.clear()
    out = import_file(ws, ws.review_inbox / "task.xml")
    assert out["skipped"] == 3 and out.get("error") is None


def test_a_file_with_rejected_images_is_read_again_when_the_images_change(ws, monkeypatch):
    """Records rejected because their image is not in the workspace yet import once the image
    is ingested: a file with rejects is remembered with the images it was matched against."""
    from labelloop import tables
    from labelloop.tables.schemas import IMAGES
    from labelloop.workspace import repo

    rows = tables.read_rows(repo.images_path(ws, "b1"), IMAGES)
    tables.write_rows([r for r in rows if not r["uri"].endswith("coffee.png")], IMAGES, repo.images_path(ws, "b1"))
    (ws.review_inbox / "task.xml").write_bytes(cvat_export_bytes(task_id=7))
    first = import_inbox(ws)
    assert first["new_reviews"] == 2 and first["rejects"] == 1
    calls = _counting(monkeypatch)
    assert _read(import_inbox(ws)) == [] and calls == []
    tables.write_rows(rows, IMAGES, repo.images_path(ws, "b1"))  # coffee.png ingested
    again = import_inbox(ws)
    assert [c.name for c in calls] == ["task.xml"] and again["new_reviews"] == 1


def test_a_malformed_file_leaves_the_store_untouched_and_a_reimport_adds_nothing(ws):
    (ws.review_inbox / "export.json").write_bytes((FX / "export_json.json").read_bytes())
    import_inbox(ws)
    before = sorted(os.listdir(review_store(ws).imports_dir))
    (ws.review_inbox / "broken.json").write_bytes((FX / "export_json.json").read_bytes()[:-40])
    (ws.review_inbox / "copy.json").write_bytes((FX / "export_json.json").read_bytes() + b" ")
    s = import_inbox(ws)
    by = {Path(f["file"]).name: f for f in s["files"]}
    assert "broken.json" in by["broken.json"]["error"] and "not valid JSON" in by["broken.json"]["error"]
    assert by["copy.json"]["reviews"] == 0 and by["copy.json"]["skipped"] == 3
    assert sorted(os.listdir(review_store(ws).imports_dir)) == before


def test_a_streamed_export_naming_its_project_only_after_its_first_task_keeps_that_project(ws):
    """A streamed Label Studio export takes its source from its first record; when only a later
    task names the project, the file is read again under it (as the whole-file parse decides)."""
    tasks = json.loads((FX / "export_json.json").read_text(encoding="utf-8"))
    tasks[0].pop("project")
    for ann in tasks[0]["annotations"]:
        ann.pop("project", None)
    (ws.review_inbox / "late.json").write_text(json.dumps(tasks), encoding="utf-8")
    (f,) = import_inbox(ws)["files"]
    assert f["source"] == "label-studio/project-1" and f["reviews"] == 3 and f.get("error") is None
    assert {r["source"] for r in review_store(ws).reviews()} == {"label-studio/project-1"}
