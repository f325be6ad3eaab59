"""Recovering a workspace from a process that died (``kill -9``, an out-of-memory kill, a power
loss, a full disk): what the next command finds and repairs before it does anything else.

- **Stale git and DVC locks.** A git command killed while it held ``.git/index.lock`` (or another
  ``*.lock`` under ``.git``) leaves it, and every later git command fails. Callers hold the
  workspace lock, so no labelloop process is using git; :func:`clear_stale_locks` removes such a
  lock when no git (or DVC) process has the workspace as its working directory, and otherwise
  stops with one line naming the file, the process and the command that clears it.
- **A release that did not finish.** :func:`begin_release` records the tag being cut and the
  commit it starts from in ``.labelloop/release-pending.json`` before ``release/`` changes;
  :func:`end_release` removes the record once the tag exists. The next release calls
  :func:`recover_release` first: if the tag exists, the release finished (its bookkeeping is
  written before the tag) and only the record goes; if not, the commit the release may have made
  is undone (``git reset --mixed``: the working tree keeps any edit of the user's), ``dvc.lock``
  and ``release/`` go back to the last release (or away, when there was none), and the release
  index and archived QA report of the missing tag are removed; the id and split registries keep
  what the release assigned, so the next release gives the same labels the same ids. A release is
  therefore tagged and complete, or not there at all.
- **Temporary files** (``.tmp-*``) that a killed writer left beside a table are removed by
  :func:`remove_stale_temporaries` once they are older than any write in progress could be.

Failure points (:func:`labelloop.store.failure_point`) make these moments reproducible in tests.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from labelloop.workspace import repo
from labelloop.workspace import versioning as V
from labelloop.workspace.layout import Workspace

#: Age after which a ``.tmp-*`` file no write can still be working on is removed, seconds.
STALE_TEMPORARY_S = 600


def _processes_in(root: Path, names: tuple[str, ...]) -> list[tuple[int, str]]:
    """``(pid, command)`` of live processes named ``names`` whose working directory is ``root``
    or below it (Linux ``/proc``; elsewhere nothing is found)."""
    out: list[tuple[int, str]] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    for p in proc.iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(p / "cwd"))
        except OSError:
            continue
        words = [c.decode(errors="replace") for c in cmd if c]
        if not words:
            continue
        exe = Path(words[0]).name
        is_dvc = len(words) > 2 and words[1:3] == ["-m", "dvc"]
        if (exe in names or (is_dvc and "dvc" in names)) and (cwd == root or root in cwd.parents):
            out.append((int(p.name), " ".join(words)[:120]))
    return out


def clear_stale_locks(root: Path) -> list[str]:
    """Remove the git and DVC lock files a killed command left in the repository at ``root``.

    Call under the workspace lock. Returns the removed files (relative paths).

    Raises:
        labelloop.workspace.versioning.VersioningError: a lock file exists and a git or DVC process
            is running in the workspace (the message names the file, the process and the command
            that removes the file once that process is gone).
    """
    root = Path(root).resolve()
    git_dir = root / ".git"
    locks = [p for p in git_dir.rglob("*.lock")] if git_dir.is_dir() else []
    locks += [p for p in (root / ".dvc" / "tmp" / "lock", root / ".dvc" / "tmp" / "rwlock.lock") if p.exists()]
    if not locks:
        return []
    alive = _processes_in(root, ("git", "dvc"))
    if alive:
        pid, cmd = alive[0]
        raise V.VersioningError(f"{locks[0]} is held while process {pid} ({cmd}) runs in the workspace: wait for it "
                                f"to finish; if it hangs, stop it and remove the file (rm {locks[0]})")
    removed = []
    for p in locks:
        try:
            p.unlink()
            removed.append(p.relative_to(root).as_posix())
        except FileNotFoundError:
            pass
    return removed


def pending_path(ws: Workspace) -> Path:
    """``.labelloop/release-pending.json``: the release being cut, until its tag exists."""
    return ws.state / "release-pending.json"


def begin_release(ws: Workspace, tag: str) -> None:
    """Record that ``tag`` is being cut from the current commit (before ``release/`` changes)."""
    head = V.git(ws.root, "rev-parse", "HEAD")
    p = pending_path(ws)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".tmp-{p.name}")
    tmp.write_text(json.dumps({"tag": tag, "head": head}), encoding="utf-8")
    os.replace(tmp, p)


def end_release(ws: Workspace) -> None:
    """The tag exists: forget the pending release."""
    pending_path(ws).unlink(missing_ok=True)


def recover_release(ws: Workspace) -> dict | None:
    """Finish or undo a release a killed process left pending (module docstring). Call under the
    workspace lock, after :func:`clear_stale_locks`.

    Returns None when nothing was pending, else ``{"tag", "finished": bool}`` (``finished``: the
    tag existed, only the record was left).

    Raises:
        labelloop.workspace.versioning.VersioningError: git or DVC failed while undoing.
    """
    p = pending_path(ws)
    if not p.is_file():
        return None
    try:
        pending = json.loads(p.read_text(encoding="utf-8"))
        tag, head = pending["tag"], pending["head"]
    except (OSError, ValueError, KeyError, TypeError):
        p.unlink(missing_ok=True)  # half-written record: begin_release died before it was in place
        return None
    root = ws.root
    tags = [t["tag"] for t in V.release_tags(root)]
    if tag in tags:
        end_release(ws)
        return {"tag": tag, "finished": True}
    if V.git(root, "rev-parse", "HEAD") != head:
        V.git(root, "reset", "-q", "--mixed", head)  # the untagged release commit goes; the working tree stays
    had_lock = V.git(root, "ls-tree", "--name-only", head, "--", "dvc.lock")
    if had_lock:
        V.git(root, "checkout", head, "--", "dvc.lock")
    else:
        (root / "dvc.lock").unlink(missing_ok=True)
        V.git(root, "rm", "-q", "--cached", "--ignore-unmatch", "--", "dvc.lock")
    if tags and V.release_out_md5(root):
        V.dvc(root, "checkout", "-f", "-q", V.RELEASE_STAGE)
    else:
        shutil.rmtree(ws.release_dir, ignore_errors=True)
    # what the release wrote for a tag that does not exist: its index and archived QA report
    repo.release_index_path(ws, tag).unlink(missing_ok=True)
    archived = repo.qa_dir(ws) / "releases" / tag
    if archived.is_dir():
        shutil.rmtree(archived, ignore_errors=True)
    end_release(ws)
    return {"tag": tag, "finished": False}


def remove_stale_temporaries(ws: Workspace, older_than_s: float = STALE_TEMPORARY_S) -> list[str]:
    """Remove ``.tmp-*`` files and folders under the local ``tables/``, ``release/``, ``review_inbox/``
    and ``.labelloop/`` older than ``older_than_s`` (a killed writer's leftovers). Returns them
    (workspace-relative)."""
    now = time.time()
    removed = []
    roots = [ws.release_dir, ws.review_inbox, ws.state, ws.root / "review_out"]
    if not ws.store.is_remote:
        roots.append(ws.root / "tables")
    for base in roots:
        if not base.is_dir():
            continue
        for p in base.rglob(".tmp-*"):
            try:
                if now - p.lstat().st_mtime < older_than_s:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(ws.relative(p))
            except OSError:
                continue
    return removed
