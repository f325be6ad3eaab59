"""A workspace: one labeling project in a directory that is its own git + DVC repository.

Layout under the root (all paths workspace-relative, POSIX)::

    labelloop.yaml          project settings (labelloop.workspace.config)
    dvc.yaml, dvc.lock      the release stage and its recorded hashes (content lineage)
    inbox/<batch>/...       ingested images, one folder per batch (dynamic partition)
    review_inbox/[source/]  review-tool exports dropped here (Label Studio JSON / JSON-MIN)
    review_out/<batch>/     files for the review tool (tasks.json, label_config.xml)
    tables/<asset>/...      Parquet tables per asset and partition
    release/                the current release (a DVC output; tags dataset-vN)
    .dagster/               DAGSTER_HOME: the Dagster instance shared by CLI, sensors and UI
    .labelloop/             lock file, ingest manifests, local DVC remote

With an S3 store (``LABELLOOP_STORE_URL=s3://bucket/prefix``, :mod:`labelloop.store`) ``inbox/``
and ``tables/`` live under that prefix instead (:attr:`Workspace.inbox`, :attr:`Workspace.tables`
are then UPaths) and image rows carry ``s3://`` URIs; everything else stays in the folder.

Git and DVC operations take the workspace lock (:meth:`Workspace.lock`), so the CLI, sensors
and the UI never run them concurrently.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from labelloop.store import ENV_STORE_URL, StoreSettings, is_remote
from labelloop.workspace.config import CONFIG_FILE, ProjectConfig, load_config

ENV_WORKSPACE = "LABELLOOP_WORKSPACE"
#: A batch name (use ``BATCH_NAME.fullmatch``: ``$`` alone would let a final newline through).
BATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_BATCH_NAME = 128


class WorkspaceError(RuntimeError):
    """The directory is not a usable workspace, or a path escapes it (message says which)."""


@dataclass(frozen=True)
class Workspace:
    """Paths and settings of one workspace rooted at ``root`` (absolute).

    ``store``: where images (``inbox/``) and tables (``tables/``) live
    (:class:`labelloop.store.StoreSettings`): the root folder by default, or an S3 prefix, then
    :attr:`inbox`, :attr:`tables` and their children are :class:`upath.UPath` objects. Everything
    else (labelloop.yaml, git + DVC, locks, manifests, DAGSTER_HOME, ``release/``,
    ``review_out/``, ``review_inbox/``) stays in the root folder.
    """

    root: Path
    store: StoreSettings = field(default_factory=StoreSettings)

    @classmethod
    def at(cls, root: str | os.PathLike | None = None, store: StoreSettings | None = None) -> "Workspace":
        """Workspace at ``root``, else ``$LABELLOOP_WORKSPACE``, else the current directory; its
        store is ``store``, else :meth:`labelloop.store.StoreSettings.from_env` (``$LABELLOOP_STORE_URL``)."""
        root = root or os.environ.get(ENV_WORKSPACE) or os.getcwd()
        return cls(Path(root).expanduser().resolve(), store if store is not None else StoreSettings.from_env())

    @property
    def store_root(self):
        """The folder or S3 prefix holding ``inbox/`` and ``tables/``."""
        return self.store.root() if self.store.is_remote else self.root

    # ---- paths -----------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def inbox(self) -> Path:
        return self.store_root / "inbox"

    @property
    def review_inbox(self) -> Path:
        return self.root / "review_inbox"

    @property
    def review_out(self) -> Path:
        return self.root / "review_out"

    @property
    def tables(self) -> Path:
        return self.store_root / "tables"

    @property
    def release_dir(self) -> Path:
        return self.root / "release"

    @property
    def state(self) -> Path:
        return self.root / ".labelloop"

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("LABELLOOP_DAGSTER_HOME") or self.root / ".dagster")

    @property
    def dvc_remote(self) -> Path:
        return self.state / "dvc-remote"

    def table(self, *parts: str) -> Path:
        return self.tables.joinpath(*parts)

    def batch_dir(self, batch: str) -> Path:
        check_batch_name(batch)
        return self.inbox / batch

    def manifest_path(self, batch: str) -> Path:
        check_batch_name(batch)
        return self.state / "ingest" / f"{batch}.jsonl"

    def resolve_inside(self, rel: str) -> Path:
        """``root / rel`` if it stays inside the workspace.

        Raises:
            WorkspaceError: ``rel`` is absolute or escapes the root (``..``, symlinks).
        """
        p = (self.root / rel).resolve()
        if p != self.root and self.root not in p.parents:
            raise WorkspaceError(f"path {rel!r} escapes the workspace {self.root}")
        return p

    def relative(self, path: Path) -> str:
        """The reference tables store for ``path``: workspace-relative POSIX for local files,
        the full URI (``s3://bucket/...``) for store objects."""
        if is_remote(path):
            return str(path)
        full, root = os.path.abspath(path), str(self.root)
        if full.startswith(root + os.sep):  # the common case, without resolve()'s lstat per part
            return full[len(root) + 1:].replace(os.sep, "/")
        return Path(path).resolve().relative_to(self.root).as_posix()

    def locate(self, ref: str):
        """The path of a reference made by :meth:`relative` (an image row's ``uri``): a store
        object for ``s3://...``, else ``root / ref``."""
        if is_remote(ref):
            return self.store.locate(ref)
        return self.root / ref

    # ---- state -----------------------------------------------------------------------
    def is_initialized(self) -> bool:
        return self.config_path.is_file() and (self.root / ".dvc").is_dir() and (self.root / ".git").exists()

    def require(self) -> "Workspace":
        """Raise :class:`WorkspaceError` unless the workspace was created by ``labelloop init``
        and its store is the one its data is in (:meth:`check_store`)."""
        if not self.is_initialized():
            raise WorkspaceError(
                f"{self.root} is not a labelloop workspace (no labelloop.yaml, .git and .dvc): "
                "run `labelloop init` there, or pass --workspace PATH"
            )
        return self.check_store()

    def check_store(self) -> "Workspace":
        """Refuse a store other than the one the workspace's images and tables are in, so a
        changed or forgotten ``LABELLOOP_STORE_URL`` never splits one project over two stores.

        An S3 store is recorded in ``.labelloop/store_url`` on first use; a workspace with no
        record uses its folder (nothing is written for it, so local workspaces are unchanged).

        Raises:
            WorkspaceError: the record names another store, or an S3 store is set for a
                workspace whose tables are already in its folder.
            labelloop.store.StoreError: the store URL is unusable (nothing is recorded).
        """
        record = self.state / "store_url"
        recorded = record.read_text(encoding="utf-8").strip() if record.is_file() else None
        current = self.store.check_url() if self.store.is_remote else None  # never record a bad URL
        if recorded == current:
            return self
        if recorded is not None:
            raise WorkspaceError(
                f"{self.root} keeps its images and tables in {recorded}, but the store is now "
                f"{current or 'the workspace folder'}: set {ENV_STORE_URL}={recorded}")
        local = self.root / "tables"
        if local.is_dir() and any(local.iterdir()):
            raise WorkspaceError(
                f"{self.root} keeps its tables in {local}, but the store is now {current}: unset {ENV_STORE_URL} "
                "(or start a new workspace for the S3 store)")
        assert current is not None  # nothing recorded, and the store differs from the folder: an S3 store
        self.state.mkdir(parents=True, exist_ok=True)
        record.write_text(current + "\n", encoding="utf-8")
        return self

    def config(self) -> ProjectConfig:
        return load_config(self.config_path)

    def lock(self, timeout: float = 600) -> FileLock:
        """Workspace lock for git/DVC operations and shared registries (a file lock)."""
        self.state.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.state / "workspace.lock"), timeout=timeout)

    def batches(self) -> list[str]:
        """Batch names in ingest order (by the first ingest_seq of each manifest)."""
        folder = self.state / "ingest"
        names = [p.stem for p in folder.glob("*.jsonl")] if folder.is_dir() else []
        extra = [p.name for p in self.inbox.iterdir() if p.is_dir() and BATCH_NAME.fullmatch(p.name)] if self.inbox.is_dir() else []
        names = sorted(set(names) | set(extra))

        def first_seq(name: str) -> tuple[int, str]:
            rows = read_manifest(self, name)
            return (min((r["ingest_seq"] for r in rows), default=1 << 62), name)

        return sorted(names, key=first_seq)


def check_batch_name(batch: str) -> str:
    """Batch names are partition keys and folder names: letters, digits, ``. _ -``, at most 128
    characters, not starting with ``.`` or ``-``.

    Raises:
        WorkspaceError: the name is empty, too long (the message says the limit), has a path
            separator, a newline or another character.
    """
    if isinstance(batch, str) and len(batch) > MAX_BATCH_NAME:
        raise WorkspaceError(f"invalid batch name {batch!r}: {len(batch)} characters, at most {MAX_BATCH_NAME}")
    if not isinstance(batch, str) or not BATCH_NAME.fullmatch(batch):
        raise WorkspaceError(
            f"invalid batch name {batch!r}: use letters, digits, '.', '_' and '-' (not starting with '.' or '-')"
        )
    return batch


def read_manifest(ws: Workspace, batch: str) -> list[dict]:
    """Ingest manifest rows of ``batch`` (source_path, origin_path, ingest_seq, sha256, uri)."""
    path = ws.manifest_path(batch)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def next_ingest_seq(ws: Workspace) -> int:
    """1 + the largest ingest_seq in any manifest (1 for an empty workspace)."""
    folder = ws.state / "ingest"
    best = 0
    if folder.is_dir():
        for p in folder.glob("*.jsonl"):
            for r in read_manifest(ws, p.stem):
                best = max(best, int(r["ingest_seq"]))
    return best + 1
