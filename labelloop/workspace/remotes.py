"""Where a workspace's releases go: its git remote (commits and tags) and DVC remote (the data).

Defaults: no git remote, and the DVC remote ``local`` (the folder ``.labelloop/dvc-remote`` that
``labelloop init`` makes). Production: an S3 bucket through dvc-s3, set once with
``labelloop remote`` or by environment variables read on every run (Dagster's ``EnvVar``
pattern, see ``resources/dvc.py``):

- ``LABELLOOP_DVC_REMOTE``: URL of the data remote (``s3://bucket/prefix``, or a folder). It
  becomes the DVC remote ``storage``, the default, in ``.dvc/config``; that file is committed
  with the next release, so a clone at that tag knows where its data is.
- ``LABELLOOP_DVC_ENDPOINT_URL``: an S3-compatible server (MinIO, Ceph, a test server). It goes
  to ``.dvc/config.local`` (``dvc remote modify --local``), which git never sees.
- ``LABELLOOP_GIT_REMOTE``: URL or path of the git remote ``origin``.
- S3 credentials are never stored by labelloop: boto3's chain (``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance roles) or DVC's own
  ``dvc remote modify --local storage access_key_id ...`` (see DVC's S3 remote docs).

:func:`push` sends the data of every release tag to the DVC remote first, then the branch and
the tags to the git remote, so a tag never arrives before its data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from labelloop.workspace.versioning import VersioningError, dvc, git

ENV_DVC_REMOTE = "LABELLOOP_DVC_REMOTE"
ENV_DVC_ENDPOINT = "LABELLOOP_DVC_ENDPOINT_URL"
ENV_GIT_REMOTE = "LABELLOOP_GIT_REMOTE"
DVC_REMOTE = "storage"
GIT_REMOTE = "origin"


@dataclass(frozen=True)
class RemoteSettings:
    """Remote URLs to apply to a workspace; None leaves that setting as it is."""

    dvc_url: str | None = None
    endpoint_url: str | None = None
    git_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RemoteSettings":
        """Settings from ``LABELLOOP_DVC_REMOTE``, ``LABELLOOP_DVC_ENDPOINT_URL`` and
        ``LABELLOOP_GIT_REMOTE`` (empty values count as unset)."""
        env = os.environ if env is None else env
        return cls(env.get(ENV_DVC_REMOTE) or None, env.get(ENV_DVC_ENDPOINT) or None, env.get(ENV_GIT_REMOTE) or None)


def _dvc_config(root: Path) -> dict[str, str]:
    """Every DVC setting (all levels merged) as ``{"remote.<name>.url": value, ...}``, from
    ``dvc config --list`` (one ``key=value`` per line; ``dvc remote list`` wraps long lines)."""
    out = {}
    for line in dvc(root, "config", "--list").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _dvc_remotes(root: Path) -> dict[str, str]:
    return {k[len("remote."):-len(".url")]: v for k, v in _dvc_config(root).items()
            if k.startswith("remote.") and k.endswith(".url")}


def _local_endpoint(root: Path, name: str) -> str:
    return dvc(root, "config", "--local", f"remote.{name}.endpointurl", check=False).strip() if name else ""


def describe(root: Path) -> dict:
    """``{"git": {name: url}, "dvc": {name: url}, "dvc_default": name, "endpoint_url": url|None}``."""
    root = Path(root)
    gits = {}
    for line in git(root, "remote", "-v").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            gits[parts[0]] = parts[1]
    default = dvc(root, "remote", "default", check=False).strip() or None
    endpoint = _local_endpoint(root, default or "")
    return {"git": gits, "dvc": _dvc_remotes(root), "dvc_default": default, "endpoint_url": endpoint or None}


def configure(root: Path, settings: RemoteSettings) -> dict:
    """Apply ``settings`` to the workspace repository (idempotent; callers hold the lock; with
    nothing set it only describes).

    The DVC URL becomes the default remote ``storage`` in ``.dvc/config`` (committed by the next
    release or :func:`push`), the endpoint goes to ``.dvc/config.local``, the git URL to the git
    remote ``origin``. Returns :func:`describe` afterwards.

    Raises:
        VersioningError: git or DVC refused a value (the message says which).
    """
    root = Path(root)
    if not (settings.dvc_url or settings.endpoint_url or settings.git_url):
        return describe(root)
    remotes = _dvc_remotes(root)
    default = dvc(root, "remote", "default", check=False).strip()
    target = settings.dvc_url or remotes.get(default, "")
    if settings.endpoint_url and not target.startswith("s3://"):
        raise VersioningError(f"an endpoint URL applies to an S3 remote, but the DVC remote would be "
                              f"{target or 'not set'}: give an s3:// URL with --dvc (or {ENV_DVC_REMOTE}) too")
    if settings.dvc_url:
        if remotes.get(DVC_REMOTE) != settings.dvc_url:
            if not settings.dvc_url.startswith("s3://") and _local_endpoint(root, DVC_REMOTE):
                dvc(root, "remote", "modify", "--local", "--unset", DVC_REMOTE, "endpointurl")
            dvc(root, "remote", "add", "-f", DVC_REMOTE, settings.dvc_url)
        if default != DVC_REMOTE:
            dvc(root, "remote", "default", DVC_REMOTE)
            default = DVC_REMOTE
    if settings.endpoint_url and _local_endpoint(root, default) != settings.endpoint_url:
        dvc(root, "remote", "modify", "--local", default, "endpointurl", settings.endpoint_url)
    if settings.git_url:
        have = git(root, "remote", "get-url", GIT_REMOTE, check=False)  # "" when there is none
        if not have:
            git(root, "remote", "add", GIT_REMOTE, settings.git_url)
        elif have != settings.git_url:
            git(root, "remote", "set-url", GIT_REMOTE, settings.git_url)
    return describe(root)


def _commit_config(root: Path) -> bool:
    """Commit a changed ``.dvc/config`` (a new remote) so clones see it; True when committed."""
    if git(root, "status", "--porcelain", "--", ".dvc/config"):
        git(root, "add", "--", ".dvc/config")
        git(root, "commit", "-q", "-m", "dvc remote configuration")
        return True
    return False


def push(root: Path, data: bool = True, code: bool | None = None) -> dict:
    """Push the releases: DVC data of every release tag and of the working tree to the default
    DVC remote (``dvc push --all-tags``), then the current branch and all tags to ``origin``.

    ``code``: push git too (default: when ``origin`` exists). Callers hold the workspace lock.

    Returns:
        ``{"dvc_remote", "dvc_url", "git_remote", "branch", "tags", "config_committed"}``
        (``git_remote`` None when git was not pushed).

    Raises:
        VersioningError: no DVC remote, data missing from the local cache, or a refused push;
            the message names the command and its last error line.
    """
    root = Path(root)
    info = describe(root)
    committed = _commit_config(root)
    out = {"dvc_remote": info["dvc_default"], "dvc_url": info["dvc"].get(info["dvc_default"] or ""),
           "git_remote": None, "branch": None, "tags": [], "config_committed": committed}
    if data:
        if not info["dvc_default"]:
            raise VersioningError("no default DVC remote: run `labelloop remote --dvc URL`")
        # no -q: DVC 3 quiet mode drops its ERROR line too, and the failure message needs it
        dvc(root, "push", "--all-tags")  # every tag, and the working tree
    if code is None:
        code = GIT_REMOTE in info["git"]
    if code:
        if GIT_REMOTE not in info["git"]:
            raise VersioningError("no git remote 'origin': run `labelloop remote --git URL`")
        branch = git(root, "rev-parse", "--abbrev-ref", "HEAD")
        if branch == "HEAD":
            raise VersioningError("HEAD is detached: check out the branch (e.g. `git checkout main`) before pushing")
        git(root, "push", "-q", GIT_REMOTE, f"refs/heads/{branch}:refs/heads/{branch}")
        git(root, "push", "-q", GIT_REMOTE, "refs/tags/dataset-v*:refs/tags/dataset-v*")
        out.update(git_remote=info["git"][GIT_REMOTE], branch=branch,
                   tags=[t for t in git(root, "tag", "-l", "dataset-v*").split()])
    return out


# ---- the release stage's dependency on the label tables (labelloop.store) ----------------------
STORE_REMOTE = "store"
_LOCAL_DEP, _STORE_DEP = "- tables/labels\n", f"- remote://{STORE_REMOTE}/tables/labels\n"


def configure_store(root: Path, store) -> bool:
    """Point the release stage's ``tables/labels`` dependency at the workspace's table store
    (idempotent; callers hold the lock). Returns True when ``dvc.yaml`` changed.

    Local store: the dependency is ``tables/labels`` (the template). S3 store
    (:class:`labelloop.store.StoreSettings`): DVC's external dependency
    ``remote://store/tables/labels`` through the DVC remote ``store`` (its URL in ``.dvc/config``,
    committed with the release; its endpoint in ``.dvc/config.local``; credentials from boto3's
    chain), so ``dvc commit`` records the md5 of the S3 label tables in ``dvc.lock`` as it does
    for local ones. ``store`` is never the default remote: releases still push to ``storage``.

    Raises:
        VersioningError: DVC refused a value.
    """
    path = Path(root) / "dvc.yaml"
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    if store.is_remote:
        remotes = _dvc_remotes(Path(root))
        if remotes.get(STORE_REMOTE) != store.url.rstrip("/"):
            dvc(root, "remote", "add", "-f", STORE_REMOTE, store.url.rstrip("/"))
        if store.endpoint_url and _local_endpoint(Path(root), STORE_REMOTE) != store.endpoint_url:
            dvc(root, "remote", "modify", "--local", STORE_REMOTE, "endpointurl", store.endpoint_url)
        new = text.replace(_LOCAL_DEP, _STORE_DEP)
    else:
        new = text.replace(_STORE_DEP, _LOCAL_DEP)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text
