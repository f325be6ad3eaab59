"""Git + DVC for a workspace: init, release commits and tags, rollback.

DVC is driven through its command line (``python -m dvc``), its stable contract; the
release stage is declared in the workspace's ``dvc.yaml`` (template: the code repository's
top-level dvc.yaml) and recorded with ``dvc commit`` after Dagster has written ``release/``
(DVC docs, "dvc commit"; Dagster computes, DVC records). Each release is a git commit of
``dvc.lock`` tagged ``dataset-vN`` (annotated; the message holds the release note and a
``content-sha256:`` line and, when the release was cut by a Dagster run, a ``dagster-run:``
line). ``N`` is never reused. Rollback restores ``release/`` byte for byte from the DVC cache
(fetching from the default remote when the cache lacks it, e.g. in a fresh clone) and never
deletes a later tag. Callers hold the workspace lock.

Reading an old release needs no checkout: :func:`read_release_file` goes through ``dvc.api``
with ``rev=`` (the documented DVC Python API), from the cache or the default remote.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from labelloop.store import failure_point
from labelloop.workspace.guidelines import GUIDELINES_FILE

TAG_PREFIX = "dataset-v"
TAG_RE = re.compile(r"^dataset-v(\d+)$")
RELEASE_STAGE = "release"


class VersioningError(RuntimeError):
    """A git or DVC command failed; the message holds the command and its stderr."""


def _env() -> dict:
    env = dict(os.environ)
    env.update(DVC_NO_ANALYTICS="1", GIT_TERMINAL_PROMPT="0", DVC_IGNORE_ISATTY="1")
    return env


# DVC's closing advice, printed after every error: it names no cause
_FOOTER = re.compile(r"having any troubles|hit us up|dvc\.org/support|discord|^-+$", re.I)
_CAUSE = re.compile(r"error|fatal|failed|unable|cannot|could not|denied|no space|not found|refused|timed? ?out", re.I)


def failure_lines(output: str, most: int = 3) -> str:
    """The lines of a failed git or DVC command's output that name the cause (errors, not DVC's
    closing advice), joined by a vertical bar; the last lines when none says "error"."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not _FOOTER.search(ln)]
    causes = [ln for ln in lines if _CAUSE.search(ln)]
    return " | ".join((causes or lines)[-most:])


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env())
    if check and proc.returncode != 0:
        why = failure_lines(proc.stderr or proc.stdout) or f"exit {proc.returncode}"
        raise VersioningError(f"`{' '.join(cmd[2:] if cmd[0] == sys.executable else cmd)}` failed in {cwd}: {why}")
    return proc


def git(root: Path, *args: str, check: bool = True) -> str:
    """Run ``git args`` in ``root``; returns stdout stripped. Raises VersioningError."""
    return _run(["git", *args], Path(root), check).stdout.strip()


def dvc(root: Path, *args: str, check: bool = True) -> str:
    """Run ``python -m dvc args`` in ``root`` (analytics off). Raises VersioningError."""
    return _run([sys.executable, "-m", "dvc", *args], Path(root), check).stdout.strip()


def init_repo(root: Path, dvc_yaml_template: str, remote: Path, gitignore: list[str]) -> None:
    """Make ``root`` a git + DVC repository (idempotent).

    git init (with a local identity ``labelloop <labelloop@localhost>`` when none is
    configured), ``dvc init``, analytics off, a local default DVC remote at ``remote``, the
    release stage ``dvc.yaml``, the ``.gitignore`` entries; then one initial commit.
    """
    root = Path(root)
    if not (root / ".git").exists():
        git(root, "init", "-q", "-b", "main")
    ensure_identity(root)
    if not (root / ".dvc").is_dir():
        dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    remote.mkdir(parents=True, exist_ok=True)
    dvc(root, "remote", "add", "-f", "-d", "local", str(remote))
    if not (root / "dvc.yaml").exists():
        (root / "dvc.yaml").write_text(dvc_yaml_template, encoding="utf-8")
    gi = root / ".gitignore"
    lines = gi.read_text(encoding="utf-8").splitlines() if gi.exists() else []
    gi.write_text("\n".join(lines + [g for g in gitignore if g not in lines]) + "\n", encoding="utf-8")
    git(root, "add", "-A")
    if git(root, "status", "--porcelain"):
        git(root, "commit", "-q", "-m", "labelloop init")


def ensure_identity(root: Path) -> None:
    """Give the repository a local git identity ``labelloop <labelloop@localhost>`` when none is
    configured anywhere (a fresh clone on a machine without one), so commits never fail."""
    if not git(root, "config", "user.email", check=False):
        git(root, "config", "user.name", "labelloop")
        git(root, "config", "user.email", "labelloop@localhost")


def release_tags(root: Path) -> list[dict]:
    """Release tags, oldest first: ``{"tag", "n", "git_sha", "content_sha256", "subject"}``."""
    # fields end with US (0x1f), records with RS (0x1e): neither occurs in tag names or messages
    fmt = "%(refname:short)%1f%(*objectname)%1f%(objectname)%1f%(contents)%1f%1e"
    # not git(): str.strip() would eat the separators (Python counts 0x1c-0x1f as whitespace)
    out = _run(["git", "for-each-ref", f"refs/tags/{TAG_PREFIX}*", f"--format={fmt}"], Path(root)).stdout
    tags = []
    for chunk in out.split("\x1e"):
        parts = chunk.lstrip("\n").split("\x1f")
        if len(parts) < 4 or not TAG_RE.match(parts[0].strip()):
            continue
        name, sha, body = parts[0].strip(), parts[1] or parts[2], parts[3]
        m = re.search(r"^content-sha256: ([0-9a-f]{64})$", body, re.M)
        run = re.search(r"^dagster-run: (\S+)$", body, re.M)
        tag_m = TAG_RE.match(name)
        assert tag_m is not None  # matched above
        tags.append({"tag": name, "n": int(tag_m.group(1)), "git_sha": sha,
                     "content_sha256": m.group(1) if m else None,
                     "subject": body.strip().splitlines()[0] if body.strip() else ""})
        if run:
            tags[-1]["run_id"] = run.group(1)
    return sorted(tags, key=lambda t: t["n"])


def next_release_number(root: Path, counter: Path) -> int:
    """1 + max(highest tag number, the persisted counter): ``N`` is never reused, even when a
    tag was deleted by hand."""
    seen = max([t["n"] for t in release_tags(root)] + [0])
    if counter.is_file():
        seen = max(seen, int(counter.read_text().strip() or 0))
    return seen + 1


def release_out_md5(root: Path) -> str | None:
    """The DVC md5 of ``release/`` recorded in dvc.lock (``<md5>.dir``), or None."""
    lock = Path(root) / "dvc.lock"
    if not lock.is_file():
        return None

    data = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    for out in data.get("stages", {}).get(RELEASE_STAGE, {}).get("outs", []):
        if out.get("path") == "release":
            return out.get("md5")
    return None


def commit_release(root: Path, n: int, note: str, content_sha256: str, counter: Path, push: bool = True,
                   run_id: str | None = None) -> dict:
    """Record ``release/`` in dvc.lock, push it to the default remote, commit and tag it; the
    commit also holds labelloop.yaml and guidelines.md as they are (the labeling guidelines).

    ``run_id``: the Dagster run cutting the release, written in the tag message
    (``dagster-run: <id>``). Returns ``{"tag", "git_sha", "dvc_md5"}``. Raises VersioningError.
    """
    root = Path(root)
    tag = f"{TAG_PREFIX}{n}"
    ensure_identity(root)
    dvc(root, "commit", "-f", "-q", RELEASE_STAGE)
    if push:
        dvc(root, "push")  # no -q: quiet mode drops the ERROR line a failure message needs
    failure_point("release:git-add", root=root)
    versioned = ["dvc.lock", "dvc.yaml", ".gitignore", "labelloop.yaml", ".dvc/config"]
    if (root / GUIDELINES_FILE).exists() or git(root, "ls-files", "--", GUIDELINES_FILE):
        versioned.append(GUIDELINES_FILE)  # the labeling guidelines, versioned with the labels (or their deletion)
    git(root, "add", "-A", "--", *versioned)
    git(root, "commit", "-q", "--allow-empty", "-m", f"release {tag}\n\n{note}")
    failure_point("release:after-commit", root=root)
    run = f"dagster-run: {run_id}\n" if run_id else ""
    git(root, "tag", "-a", tag, "-m", f"{note}\n\ncontent-sha256: {content_sha256}\n{run}")
    counter.parent.mkdir(parents=True, exist_ok=True)
    counter.write_text(str(n))
    return {"tag": tag, "git_sha": git(root, "rev-parse", "HEAD"), "dvc_md5": release_out_md5(root)}


def rollback(root: Path, tag: str) -> dict:
    """Restore ``release/`` to ``tag`` byte for byte (dvc.lock from the tag, then ``dvc checkout``),
    and commit that as ``rollback to <tag>``. Later tags and the label tables are untouched, so
    ``dvc status`` afterwards reports the current labels as changed dependencies.

    Returns ``{"tag", "git_sha", "dvc_md5"}``. Raises VersioningError for an unknown tag.
    """
    root = Path(root)
    if not TAG_RE.match(tag) or tag not in {t["tag"] for t in release_tags(root)}:
        known = ", ".join(t["tag"] for t in release_tags(root)) or "none"
        raise VersioningError(f"unknown release tag {tag!r} (releases: {known})")
    ensure_identity(root)
    git(root, "checkout", tag, "--", "dvc.lock")
    try:
        dvc(root, "checkout", "-f", "-q", RELEASE_STAGE)
    except VersioningError:  # not in the local cache (a fresh clone): fetch it from the default remote
        dvc(root, "pull", "-f", "-q", RELEASE_STAGE)
    git(root, "add", "dvc.lock")
    if git(root, "status", "--porcelain", "--", "dvc.lock"):
        git(root, "commit", "-q", "-m", f"rollback release/ to {tag}")
    return {"tag": tag, "git_sha": git(root, "rev-parse", "HEAD"), "dvc_md5": release_out_md5(root)}


def tag_message(root: Path, tag: str) -> str:
    """The full message of an annotated release tag (its release note), ``""`` if none."""
    return git(Path(root), "tag", "-l", "--format=%(contents)", tag, check=False)


def read_release_file(root: str | Path, rel: str, rev: str, missing_ok: bool = False) -> bytes | None:
    """Bytes of ``release/<rel>`` as it was at git revision ``rev`` (e.g. ``dataset-v1``), read with
    ``dvc.api.read(..., rev=rev)``: from the local cache, else the default DVC remote; nothing is
    checked out.

    Raises:
        VersioningError: an unknown revision, or (unless ``missing_ok``, which returns None) a
            file the release does not have; any other DVC failure (e.g. unreachable data).
    """
    import dvc.api  # heavy (about a second): only when a release file is read through DVC
    from dvc.exceptions import (  # heavy (about a second): only when a release file is read through DVC
        DvcException,
        PathMissingError,
    )

    try:
        return dvc.api.read(f"release/{rel}", repo=str(root), rev=rev, mode="rb")
    except PathMissingError:
        if missing_ok:
            return None
        raise VersioningError(f"release {rev} has no file {rel!r}") from None
    except DvcException as exc:
        raise VersioningError(f"cannot read release/{rel} at {rev} in {root}: {exc}") from None
