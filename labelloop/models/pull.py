"""Download a model from the Hugging Face Hub into the workspace, verified, and record it.

:func:`pull` ``(ws, name, revision=None) -> PullResult``:

1. ``name`` is a catalog name (:mod:`labelloop.models.catalog`) or a hub repo id ``org/name``.
2. If ``<models dir>/<name>/`` already holds a complete pull of the same repo and revision (its
   :data:`RECORD` says so and the folder still hashes to the recorded sha256), nothing is
   downloaded (``PullResult.already``).
3. ``HfApi(endpoint).model_info(repo, revision, files_metadata=True)`` resolves the revision to a
   commit and lists the files with their git blob id and, for LFS files, the sha256 the hub
   declares (``siblings[i].lfs.sha256``).
4. ``snapshot_download(repo, revision=<commit>, local_dir=<temp folder beside the target>,
   allow_patterns=<files_to_fetch>)`` downloads them (plain HTTPS, or Xet when the hub offers it
   and ``hf_xet`` is installed).
5. Every LFS file's sha256, and every other file's git blob sha1, must equal what the hub
   declared; then the folder's ``.cache`` is removed, :data:`RECORD` written, the folder renamed
   to ``<name>/`` (atomic on one file system) and a models-table row upserted
   (:func:`labelloop.models.registry.upsert_model`) with ``sha256`` =
   :func:`labelloop.models.hashing.sha256_path` of the folder.

The endpoint is ``$HF_ENDPOINT`` (default ``https://huggingface.co``), read at each call; the
token is huggingface_hub's usual one (``$HF_TOKEN``, else the one ``hf auth login`` saved).

Errors (:class:`PullError`, one line each): an unknown name; a gated or private repository
without an accepted token (HTTP 401/403: names the repo, ``hf auth login`` and ``HF_TOKEN``); no
such repo or revision (404); the hub unreachable (names the endpoint); a file whose hash differs
from the declared one (names the file and both hashes; nothing is left installed).

Sources: huggingface_hub docs, "Download files from the Hub"
(https://huggingface.co/docs/huggingface_hub/guides/download), ``HfApi.model_info``
(https://huggingface.co/docs/huggingface_hub/package_reference/hf_api), "Environment variables"
(https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from labelloop.images.files import sha256_file
from labelloop.models import registry
from labelloop.models.catalog import CatalogEntry, UnknownModelError, lookup
from labelloop.models.hashing import sha256_path, size_path
from labelloop.tables.schemas import ModelRow
from labelloop.workspace.layout import Workspace

#: The pull record inside a pulled folder (hidden, so :func:`~labelloop.models.hashing.sha256_path`
#: leaves it out): repo, requested revision, commit, declared hashes and the folder's sha256.
RECORD = ".labelloop-pull.json"
DEFAULT_ENDPOINT = "https://huggingface.co"
#: Weights in other frameworks' formats, left out when the repo has safetensors weights.
_DUPLICATE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "*.tflite",
                      "*.mlmodel", "*.gguf")


class PullError(RuntimeError):
    """A pull failed; the message is one line naming the model and the reason (module docstring)."""


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` did.

    Fields:

    - ``row``: the models-table row of the model.
    - ``path``: the pulled folder (absolute).
    - ``snippet``: the ``labelloop.yaml`` lines that use it (:func:`yaml_snippet`), or None when no
      labelloop backend loads the model yet.
    - ``already``: True when the folder was already complete (nothing downloaded).
    """

    row: ModelRow
    path: Path
    snippet: str | None
    already: bool


def endpoint() -> str:
    """The hub endpoint: ``$HF_ENDPOINT`` without a trailing ``/``, else ``https://huggingface.co``."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def yaml_snippet(spec_kind: str | None, role: str, path: str, sha256: str) -> str | None:
    """The ``labelloop.yaml`` lines that make the pre-labeler use a pulled model, e.g.::

        prelabeler:
          backend: foundation
          detector: {kind: grounding-dino, path: models/grounding-dino-tiny, sha256: <64 hex>}

    (``segmenter: {kind: sam2, ...}`` for a segmenter, beside a detector; for role ``sam3``:
    ``backend: sam3`` and ``sam3: {path: ..., sha256: ...}``). None when ``spec_kind`` is None (no
    backend loads the model yet).
    """
    if spec_kind is None or role not in ("detector", "segmenter", "sam3"):
        return None
    if role == "sam3":
        return f"prelabeler:\n  backend: sam3\n  sam3: {{path: {path}, sha256: {sha256}}}\n"
    return f"prelabeler:\n  backend: foundation\n  {role}: {{kind: {spec_kind}, path: {path}, sha256: {sha256}}}\n"


def files_to_fetch(names: list[str]) -> list[str]:
    """The repo files to download, sorted: all of them, except ``.gitattributes`` and, when a
    ``*.safetensors`` file exists, weights in other formats (``_DUPLICATE_WEIGHTS``)."""
    has_st = any(n.endswith(".safetensors") for n in names)
    keep = [n for n in names if n != ".gitattributes"
            and not (has_st and any(fnmatch.fnmatch(n, p) for p in _DUPLICATE_WEIGHTS))]
    return sorted(keep)


def git_blob_sha1(path: Path) -> str:
    """Git's blob id of a file: sha1 of ``b"blob <size>\\0" + bytes`` (40 hex), what the hub
    declares for files not stored in LFS."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record_of(folder: Path) -> dict[str, Any] | None:
    try:
        body = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _complete(folder: Path, repo_id: str, revision: str) -> dict[str, Any] | None:
    """The record of ``folder`` if it holds a complete pull of ``repo_id`` at ``revision`` (the
    requested revision or the commit it resolved to) and still hashes as recorded."""
    rec = _record_of(folder)
    if not rec or rec.get("repo_id") != repo_id or revision not in (rec.get("revision"), rec.get("commit")):
        return None
    try:
        return rec if sha256_path(folder) == rec.get("sha256") else None
    except OSError:
        return None


def _hub_error(exc: Exception, repo_id: str, revision: str, url: str) -> PullError:
    """One line for an error of huggingface_hub (HTTP status, or a transport error)."""
    from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

    if isinstance(exc, RevisionNotFoundError):
        return PullError(f"{repo_id}: no revision {revision!r} on {url}")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return PullError(f"{repo_id}: the hub refused access (HTTP {status}): the repository is gated or private. "
                             f"Accept its licence at {url}/{repo_id}, then sign in with `hf auth login` "
                             "or set HF_TOKEN to a token that has access")
        if status == 404:
            return PullError(f"{repo_id}: no such model repository on {url} (HTTP 404)")
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        return PullError(f"{repo_id}: the hub at {url} answered HTTP {status}: {first}")
    return PullError(f"{repo_id}: cannot reach the hub at {url} ({type(exc).__name__}: {exc}); "
                     "check the network or HF_ENDPOINT")


def _verify(folder: Path, files: list[str], declared: dict[str, Any], repo_id: str) -> dict[str, str]:
    """Check every downloaded file against the hub's sha256 (LFS) or git blob id; returns
    ``{file: sha256}`` of the LFS files.

    Raises:
        PullError: a file is missing or its hash differs (names the file and both hashes).
    """
    upstream: dict[str, str] = {}
    for name in files:
        f, sib = folder / name, declared[name]
        if not f.is_file():
            raise PullError(f"{repo_id}: {name} was not downloaded")
        if sib.lfs is not None:
            found = sha256_file(f)
            if found != sib.lfs.sha256:
                raise PullError(f"{repo_id}: {name} has sha256 {found}, but the hub declares {sib.lfs.sha256}: "
                                "a damaged or tampered download; nothing was installed")
            upstream[name] = found
        elif sib.blob_id:
            found = git_blob_sha1(f)
            if found != sib.blob_id:
                raise PullError(f"{repo_id}: {name} has git blob id {found}, but the hub declares {sib.blob_id}: "
                                "a damaged or tampered download; nothing was installed")
    return upstream


def pull(ws: Workspace, name: str, revision: str | None = None, *, role: str | None = None,
         spec_kind: str | None = None) -> PullResult:
    """Download, verify and record the model ``name`` (module docstring).

    Args:
        ws: the workspace (its models table; the folder goes to
            :func:`labelloop.models.registry.models_dir`).
        name: a catalog name or a hub repo id ``org/name``.
        revision: branch, tag or commit (default: the catalog's, ``main``).
        role, spec_kind: for a repo id outside the catalog, the ``labelloop.yaml`` slot
            (``detector`` | ``segmenter`` | ``sam3``) and spec kind (``grounding-dino``, ``owlv2``,
            ``sam2``, ``sam-hq``) that load it; they make the snippet.

    Returns:
        :class:`PullResult`.

    Raises:
        PullError: see the module docstring; nothing is installed and the table is unchanged.
    """
    try:
        entry: CatalogEntry = lookup(name)
    except UnknownModelError as exc:
        raise PullError(str(exc)) from None
    if role or spec_kind:
        entry = dataclasses.replace(entry, role=role or entry.role, spec_kind=spec_kind or entry.spec_kind,
                                    family=spec_kind or entry.family)
    rev = revision or entry.revision
    url = endpoint()
    root = registry.models_dir(ws)
    dest = root / entry.name
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{entry.name}.lock"), timeout=600):
        rec = _complete(dest, entry.repo_id, rev)
        if rec is None:
            rec = _download(entry, rev, url, dest)
            already = False
        else:
            already = True
        stored = registry.stored_path(ws, dest)
        row_now = registry.get_model(ws, entry.name)
        if not (already and row_now is not None and row_now["sha256"] == rec["sha256"]):
            row_now = registry.upsert_model(ws, registry.new_row(
                name=entry.name, family=entry.family, role=entry.role, kind="pretrained", path=stored,
                sha256=rec["sha256"], source=entry.repo_id, revision=rec["commit"], licence=entry.licence,
                size_bytes=rec["size_bytes"], upstream_sha256_json=json.dumps(rec["upstream_sha256"], sort_keys=True)))
        row = row_now
    return PullResult(row, dest, yaml_snippet(entry.spec_kind, entry.role, stored, rec["sha256"]), already)


def _download(entry: CatalogEntry, rev: str, url: str, dest: Path) -> dict[str, Any]:
    """Steps 3 to 5 of the module docstring; returns the record written into ``dest``."""
    import httpx2  # huggingface_hub's HTTP client (a dependency of huggingface_hub 2.x)
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    network = (httpx2.TransportError, HfHubHTTPError, LocalEntryNotFoundError)
    try:
        info = HfApi(endpoint=url).model_info(entry.repo_id, revision=rev, files_metadata=True)
    except network as exc:
        raise _hub_error(exc, entry.repo_id, rev, url) from None
    commit = info.sha or rev
    declared = {s.rfilename: s for s in info.siblings or []}
    files = files_to_fetch(list(declared))
    if not files:
        raise PullError(f"{entry.repo_id}: the repository at {url} (revision {rev}) holds no files")
    tmp = dest.parent / f".pull-{entry.name}-{uuid.uuid4().hex[:8]}"
    try:
        try:
            snapshot_download(entry.repo_id, revision=commit, local_dir=tmp, endpoint=url, allow_patterns=files,
                              cache_dir=tmp / ".cache" / "hub", max_workers=4)
        except network as exc:
            cause = exc.__cause__ if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ else exc
            raise _hub_error(cause if isinstance(cause, Exception) else exc, entry.repo_id, rev, url) from None
        upstream = _verify(tmp, files, declared, entry.repo_id)
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        rec = {"repo_id": entry.repo_id, "revision": rev, "commit": commit, "files": files,
               "upstream_sha256": upstream, "sha256": sha256_path(tmp), "size_bytes": size_path(tmp),
               "endpoint": url}
        (tmp / RECORD).write_text(json.dumps(rec, indent=1, sort_keys=True), encoding="utf-8")
        if dest.exists():  # an older or incomplete pull: moved aside, replaced, then deleted
            aside = dest.parent / f".old-{entry.name}-{uuid.uuid4().hex[:8]}"
            os.replace(dest, aside)
            os.replace(tmp, dest)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        return rec
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
