"""The review round trip with a live Label Studio server: push a batch's tasks, pull reviews.

Push (:func:`push_batch`): the batch's ``review_out/<batch>/tasks.json`` and
``label_config.xml`` (what ``review_export`` wrote for the file route, built by
:func:`labelloop.formats.labelstudio.tasks.build_import_tasks` and :func:`labelloop.formats.labelstudio.tasks.label_config_xml`)
go to the project titled ``title`` (created with that config when missing). Tasks whose
``image_id`` the project already holds are not imported again; they get the new model's
prediction when they lack it. The project's ``model_version`` is set to the pushed one, so
reviewers see those predictions as pre-annotations. What was sent is already recorded in
``tables/review_export/<batch>.parquet`` (EXPORTED_PREDICTIONS), which is what reviews are
compared against.

Pull (:func:`pull_reviews`): tasks updated since the last pull (minus an overlap, see
``overlap_s``) are exported from the server in Label Studio's JSON export format, the export
is kept as ``tables/label_studio/<source>/pulls/<sha256[:16]>.json`` and imported by
:func:`labelloop.review.importer.import_file` exactly like an export file dropped in the review inbox,
under the source ``label-studio/<host[:port]>/project-<id>``. The import is idempotent per
annotation version (source, task id, annotation id, ``updated_at``), so re-reading a task
changes nothing and an edited annotation arrives as a new version. An annotation deleted in
Label Studio stays in our store (no reviewed label is ever lost).

Images: task data reference ``/data/local-files/?d=<path>``; the server serves them from its
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT when a local-files storage of the project covers the
file's folder. :func:`push_batch` adds such a storage (never synced) for each folder the tasks
use, at the workspace's path *as the server sees it* (``workspace_path``, default: this
machine's path), and writes ``d=`` relative to ``document_root`` (default: the workspace root).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path, PurePosixPath

from filelock import FileLock

from labelloop.formats import labelstudio
from labelloop.review.importer import import_file
from labelloop.review.live.server import LabelStudioServer, LabelStudioServerError, format_ts
from labelloop.store import write_bytes_atomic, write_text_atomic
from labelloop.workspace.guidelines import GUIDELINES_FILE, guidelines_html
from labelloop.workspace.layout import Workspace, WorkspaceError

DEFAULT_OVERLAP_S = 60.0


def default_title(ws: Workspace) -> str:
    """Project title used when none is configured: ``labelloop <project>`` (labelloop.yaml)."""
    return f"labelloop {ws.config().project}"


def sync_root(ws: Workspace) -> Path:
    """``tables/label_studio/``; with an S3 store (:mod:`labelloop.store`) this bookkeeping
    (append-only logs, a file lock) stays local, in ``.labelloop/label_studio/``."""
    return ws.state / "label_studio" if ws.store.is_remote else ws.table("label_studio")


def state_dir(ws: Workspace, source: str) -> Path:
    """``<sync_root>/<slug of source>/``: pulled exports, the pull mark, the push log."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("._-") or "source"
    return sync_root(ws) / slug


def read_pull_mark(ws: Workspace, source: str) -> str | None:
    """The newest task ``updated_at`` a finished pull of ``source`` has read, or None."""
    p = state_dir(ws, source) / "state.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("tasks_updated_at")
    except (OSError, ValueError):
        return None


def reset_pull_marks(ws: Workspace) -> int:
    """Forget every pull mark, so the next pull re-reads whole projects (nothing imported is
    touched). Returns how many marks were removed."""
    n = 0
    for p in sync_root(ws).glob("*/state.json"):
        p.unlink()
        n += 1
    return n


def _write_pull_mark(ws: Workspace, source: str, value: str) -> None:
    body = {"source": source, "tasks_updated_at": value,
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    write_text_atomic(state_dir(ws, source) / "state.json", json.dumps(body, sort_keys=True))


# --------------------------------------------------------------------------- push


def server_paths(ws: Workspace, workspace_path: str | None, document_root: str | None) -> tuple[PurePosixPath, str]:
    """``(workspace root on the server, prefix of d= paths)``.

    ``workspace_path``: absolute path of the workspace on the server (default: ``ws.root``);
    ``document_root``: the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: the
    workspace path). The prefix is the workspace path relative to the document root
    (``""`` when they are equal).

    Raises:
        ValueError: a relative path, or a workspace path outside the document root.
    """
    wpath = PurePosixPath(workspace_path or ws.root.as_posix())
    root = PurePosixPath(document_root) if document_root else wpath
    if not wpath.is_absolute() or not root.is_absolute():
        raise ValueError(f"Label Studio paths must be absolute: workspace {wpath}, document root {root}")
    try:
        prefix = wpath.relative_to(root).as_posix()
    except ValueError:
        raise ValueError(f"the workspace {wpath} is not under Label Studio's document root {root} "
                         "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)") from None
    return wpath, "" if prefix == "." else prefix


def _local_path(task: dict) -> str | None:
    ref = (task.get("data") or {}).get("image")
    if not isinstance(ref, str) or not ref.startswith(labelstudio.LOCAL_FILES_PREFIX):
        return None
    return labelstudio.image_ref_path(ref)


def server_tasks(tasks: list[dict], prefix: str) -> list[dict]:
    """Copies of ``tasks`` whose local-files image references are relative to the server's
    document root: ``d=<prefix>/<workspace-relative path>`` (unchanged when ``prefix`` is "")."""
    out = []
    for t in tasks:
        t = json.loads(json.dumps(t))
        path = _local_path(t)
        if path is not None and prefix:
            t["data"]["image"] = labelstudio.image_reference(f"{prefix}/{path}")
        out.append(t)
    return out


def storage_dirs(tasks: list[dict], workspace_path: PurePosixPath) -> list[str]:
    """Server-side folders a local-files storage must cover, for tasks whose image references
    are workspace-relative (as ``review_export`` writes them): per top-level workspace folder the
    tasks use (``inbox``, ...), the deepest folder holding all of that folder's images, under
    ``workspace_path``."""
    groups: dict[str, list[str]] = {}
    for t in tasks:
        path = _local_path(t)
        if path is None:
            continue
        parts = PurePosixPath(path).parts
        if ".." in parts or len(parts) < 2:
            raise ValueError(f"task image {path!r} must be a file inside a folder of the workspace")
        groups.setdefault(parts[0], []).append(str(PurePosixPath(path).parent))
    return sorted(str(workspace_path / os.path.commonpath(dirs)) for dirs in groups.values())


def push_batch(ws: Workspace, server: LabelStudioServer, batch: str, *, title: str,
               document_root: str | None = None, workspace_path: str | None = None) -> dict:
    """Send ``review_out/<batch>/`` (tasks with pre-annotations, labeling config) to the server.

    Double review: when a task's data carry ``reviewers_required`` 2 (``review.double_review_share``),
    the project's ``maximum_annotations`` is raised to 2 (cohort 100 %, so Label Studio picks no
    random cohort of its own) and each task's ``overlap`` is set from its data: 2 for the chosen
    tasks, 1 for the others, so Label Studio hands the chosen ones to two distinct annotators.

    Returns ``{"project_id", "project_url", "source", "created_project", "config_updated",
    "tasks_created", "tasks_existing", "predictions_added", "model_version",
    "double_review_tasks" (tasks of the project taking two annotators), "guidelines_sha256",
    "instructions_updated", "task_ids": {image_id: task id}}``.

    Guidelines: the export's copy of the labeling guidelines (``review_out/<batch>/guidelines.md``,
    :func:`export_instructions`) becomes the project's instructions (Label Studio's
    ``expert_instruction``, shown before labeling) when they differ from the project's; an export
    without the copy leaves the instructions as they are (``guidelines_sha256`` None).

    Raises:
        WorkspaceError: the batch has no review export yet, or its tasks.json is not a JSON list
            of tasks.
        ValueError: bad ``document_root`` / ``workspace_path``, or a task image outside a folder.
        LabelStudioServerError: the server refused a call or could not be reached.
    """
    out = ws.review_out / batch
    try:
        tasks = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
        config = (out / "label_config.xml").read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise WorkspaceError(f"batch {batch}: no review export ({exc.filename} is missing): "
                             "materialize review_export for this batch first") from None
    except ValueError as exc:
        raise WorkspaceError(f"batch {batch}: {out / 'tasks.json'} is not valid JSON ({exc})") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        raise WorkspaceError(f"batch {batch}: {out / 'tasks.json'} is not a list of Label Studio tasks with 'data'")
    wpath, prefix = server_paths(ws, workspace_path, document_root)
    dirs = storage_dirs(tasks, wpath)
    tasks = server_tasks(tasks, prefix)
    lock = sync_root(ws) / ".push.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    instructions = export_instructions(out)
    with FileLock(str(lock)):  # two pushes at once would both import the tasks they find missing
        return _push(ws, server, batch, tasks, config, dirs, title, instructions)


def export_instructions(out: Path) -> tuple[str, str] | None:
    """``(html, guidelines_sha256)`` of the guidelines a review export folder ``out``
    (``review_out/<batch>/``) was made under: its ``guidelines.md`` copy rendered by
    :func:`labelloop.workspace.guidelines.guidelines_html`, and the sha256 of that copy's bytes
    (what the export recorded); None when the export has no copy (a workspace without
    guidelines.md, or an export made before they were copied)."""
    copy = out / GUIDELINES_FILE
    if not copy.is_file():
        return None
    data = copy.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    return guidelines_html(data.decode("utf-8", errors="replace"), sha), sha


def _push(ws: Workspace, server: LabelStudioServer, batch: str, tasks: list[dict], config: str, dirs: list[str],
          title: str, instructions: tuple[str, str] | None = None) -> dict:
    project = server.ensure_project(title, config, description=f"labelloop workspace {ws.root.name}")
    pid = project["id"]
    set_instructions = instructions is not None and project.get("expert_instruction") != instructions[0]
    if instructions is not None and set_instructions:
        server.set_instructions(pid, instructions[0])  # the guidelines the export was made under
    for d in dirs:
        server.ensure_local_storage(pid, d)
    reviewers = max((int(t["data"].get("reviewers_required") or 1) for t in tasks), default=1)
    server.ensure_overlap(pid, reviewers)  # double review: tasks that want two reviewers can take two
    existing = server.tasks_by_image_id(pid)
    new = [t for t in tasks if t["data"].get("image_id") not in existing]
    again = [t for t in tasks if t["data"].get("image_id") in existing]
    ids = server.import_tasks(pid, new) if new else []
    task_ids = {t["data"]["image_id"]: existing[t["data"]["image_id"]] for t in again}
    task_ids |= {t["data"].get("image_id"): tid for t, tid in zip(new, ids)}
    added = 0
    if again:
        versions = server.prediction_versions(pid)
        for t in again:
            tid = existing[t["data"]["image_id"]]
            for pred in t.get("predictions") or []:
                if pred.get("model_version") not in versions.get(tid, set()):
                    server.add_prediction(tid, pred)
                    added += 1
    overlaps = server.sync_task_overlaps(pid) if reviewers > 1 or project.get("maximum_annotations", 1) > 1 else {}
    counts = Counter(p.get("model_version") for t in tasks for p in t.get("predictions") or [] if p.get("model_version"))
    model_version = counts.most_common(1)[0][0] if counts else None
    if model_version and project.get("model_version") != model_version:
        server.set_model_version(pid, model_version)
    src = server.source(pid)
    summary = {"project_id": pid, "project_url": server.project_url(pid), "source": src,
               "created_project": project["created"], "config_updated": project["config_updated"],
               "tasks_created": len(ids), "tasks_existing": len(again), "predictions_added": added,
               "model_version": model_version, "double_review_tasks": sum(1 for n in overlaps.values() if n > 1),
               "guidelines_sha256": instructions[1] if instructions else None, "instructions_updated": set_instructions,
               "task_ids": task_ids}
    log = state_dir(ws, src) / "pushes.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:
        entry = {k: v for k, v in summary.items() if k != "task_ids"} | {
            "batch": batch, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
    return summary


# --------------------------------------------------------------------------- pull


def _minus(ts: str, seconds: float) -> str:
    t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00")) - dt.timedelta(seconds=seconds)
    return format_ts(t)


def pull_reviews(ws: Workspace, server: LabelStudioServer, *, title: str, full: bool = False,
                 overlap_s: float = DEFAULT_OVERLAP_S, run_id: str | None = None) -> dict:
    """Import the annotations of tasks updated since the last pull into the review store
    (``run_id``: the Dagster run pulling, stored as the new reviews' ``import_run_id``).

    ``full`` re-reads every task. Otherwise tasks updated after (pull mark - ``overlap_s``) are
    read: the overlap catches an annotation whose transaction committed after a later one was
    already seen; what was imported before is skipped by identity. The mark moves only after
    the import is committed, so a failed pull is repeated whole.

    Returns ``{"project_id", "source", "tasks", "reviews", "labels", "rejects", "skipped",
    "reject_reasons", "file", "mark"}``; ``project_id`` None when the project does not exist yet.

    Raises:
        LabelStudioServerError: the server refused a call, could not be reached, or sent an
            export that is not a Label Studio JSON export.
    """
    empty = {"tasks": 0, "reviews": 0, "labels": 0, "rejects": 0, "skipped": 0, "reject_reasons": [], "file": None}
    project = server.find_project(title)
    if project is None:
        return {"project_id": None, "source": None, "mark": None, **empty}
    pid, src = project["id"], server.source(project["id"])
    mark = None if full else read_pull_mark(ws, src)
    changed = server.changed_tasks(pid, _minus(mark, overlap_s) if mark else None)
    if not changed:
        return {"project_id": pid, "source": src, "mark": mark, **empty}
    exported = server.export_json(pid, [tid for tid, _ in changed])
    newest = max(u for _, u in changed)
    summary = dict(empty, tasks=len(changed))
    if exported:
        body = (json.dumps(exported, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")
        path = state_dir(ws, src) / "pulls" / f"{hashlib.sha256(body).hexdigest()[:16]}.json"
        fresh = not path.exists()
        if fresh:
            write_bytes_atomic(path, lambda fh: fh.write(body))

        summary = import_file(ws, path, source=src, run_id=run_id)
        if summary.get("error"):
            raise LabelStudioServerError(f"Label Studio at {server.url}: project {pid} export: {summary['error']}")
        if fresh and not summary["reviews"] and not summary["rejects"]:
            path.unlink()  # nothing new in it: keep no copy
            summary["file"] = None
        else:
            summary["file"] = ws.relative(path)
        summary["tasks"] = len(changed)
    if mark is None or newest > mark:
        _write_pull_mark(ws, src, newest)
        mark = newest
    return {"project_id": pid, "source": src, "mark": mark,
            **{k: summary.get(k, v) for k, v in empty.items()}, "tasks": len(changed)}


def newest_update(server: LabelStudioServer, title: str) -> tuple[str, str | None] | None:
    """``(source, newest task updated_at)`` of the project titled ``title``; None when the
    project does not exist. What a sensor compares with its cursor."""
    project = server.find_project(title)
    if project is None:
        return None
    return server.source(project["id"]), server.newest_update(project["id"])
