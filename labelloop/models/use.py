"""Make a pulled model the one the pre-labeler uses: ``labelloop models use NAME`` (and
``labelloop models pull NAME --use``).

:func:`use_model` takes a row of the models table (:mod:`labelloop.models.registry`), checks that
its folder still hashes to the row's sha256 (:func:`labelloop.models.hashing.sha256_path`),
writes its ``path`` and ``sha256`` into the workspace's ``labelloop.yaml`` and marks the row
``current`` for its role (:func:`labelloop.models.registry.set_current`). What it writes, by the
row's role:

- ``detector``: ``prelabeler.backend: foundation``, ``prelabeler.detector: {kind, path, sha256}``,
  and every category's ``detector`` set to that kind (the foundation backend runs one detector
  for every category);
- ``segmenter``: ``prelabeler.segmenter: {kind, path, sha256}`` (the detector and backend stay;
  the foundation backend needs a detector too);
- ``sam3``: ``prelabeler.backend: sam3``, ``prelabeler.sam3: {path, sha256}`` and every
  category's ``detector`` set to ``sam3``.

A spec of the same kind keeps its other settings (thresholds, input sizes); a spec of another
kind is replaced whole (settings such as ``arch`` belong to one kind). The spec ``kind`` is the
catalog entry's ``spec_kind`` (:data:`labelloop.models.catalog.CATALOG`), or for a model pulled
by repo id with ``--kind``, the row's ``family``. The new file is validated as a
:class:`~labelloop.workspace.config.ProjectConfig` before it replaces the old one (atomically);
it is written with ``yaml.safe_dump``, so comments in ``labelloop.yaml`` are not kept; the file keeps
its permissions, a symlinked ``labelloop.yaml`` has its target updated, and a read-only one is
refused (:class:`UseError`).
"""

from __future__ import annotations

import copy
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from labelloop.models import catalog, registry
from labelloop.models.hashing import sha256_path
from labelloop.models.pull import RECORD
from labelloop.tables.schemas import ModelRow
from labelloop.workspace.config import ProjectConfig
from labelloop.workspace.layout import Workspace
from labelloop.workspace.model_specs import DetectorSpec, SegmenterSpec

__all__ = ["DEMO_MODELS", "UseError", "UseResult", "pulled_prelabeler", "spec_kind_of", "use_model",
           "write_prelabeler"]

#: Catalog names ``labelloop demo --prelabeler`` looks for in the shared models directory, by
#: backend and role, first found wins.
DEMO_MODELS: dict[str, dict[str, tuple[str, ...]]] = {
    "sam3": {"sam3": ("sam3",)},
    "foundation": {"detector": ("grounding-dino-tiny", "owlv2-base", "florence-2-base", "florence-2-large"),
                   "segmenter": ("sam2.1-hiera-tiny", "sam-vit-base", "sam-vit-huge")},
}


class UseError(ValueError):
    """The model cannot be made current; the message names the model (and the file) and why.
    ``labelloop.yaml`` and the models table are unchanged."""


@dataclass
class UseResult:
    """What :func:`use_model` did: ``row`` (the model's row, now ``current``), ``config_path``
    (``labelloop.yaml``), ``prelabeler`` (its new ``prelabeler`` mapping), ``categories_changed``
    (names of the categories whose ``detector`` was set to the model's kind)."""

    row: ModelRow
    config_path: Path
    prelabeler: dict[str, Any]
    categories_changed: list[str]


def _kinds(spec_cls) -> tuple[str, ...]:
    return tuple(spec_cls.model_fields["kind"].annotation.__args__)


def spec_kind_of(row: ModelRow) -> str | None:
    """The spec ``kind`` that loads ``row``'s folder (module docstring), None when no labelloop
    backend does; ``"sam3"`` for role ``sam3``."""
    if row["role"] == "sam3":
        return "sam3"
    entry = catalog.CATALOG.get(row["name"])
    if entry is not None and entry.repo_id == row["source"]:
        return entry.spec_kind
    valid = _kinds(DetectorSpec) if row["role"] == "detector" else _kinds(SegmenterSpec)
    return row["family"] if row["family"] in valid else None


def _model_path(ws: Workspace, stored: str) -> Path:
    p = Path(stored).expanduser()
    return p if p.is_absolute() else ws.root / p


def use_model(ws: Workspace, name: str, by: str | None = None) -> UseResult:
    """Write model ``name``'s path and sha256 into ``labelloop.yaml`` and make it current.

    Args:
        ws: the workspace (its ``labelloop.yaml`` and models table).
        name: a name in the models table (``labelloop models list``).
        by: who asked (recorded as the row's ``promoted_by``).

    Returns:
        :class:`UseResult`.

    Raises:
        UseError: no such model; its folder is missing or no longer hashes to the recorded
            sha256; no labelloop backend loads it; ``labelloop.yaml`` is unreadable or the
            changed config would be invalid (e.g. a segmenter without a detector).
    """
    row = registry.get_model(ws, name)
    if row is None:
        known = [r["name"] for r in registry.read_models(ws)]
        raise UseError(f"no model {name!r} in the models table (installed: {', '.join(known) or 'none'}); "
                       f"pull it first: labelloop models pull {name}")
    kind = spec_kind_of(row)
    if kind is None:
        raise UseError(f"model {name!r} ({row['source']}): no labelloop backend loads it, so labelloop.yaml "
                       "cannot use it")
    folder = _model_path(ws, row["path"])
    try:
        found = sha256_path(folder)
    except OSError as exc:
        raise UseError(f"model {name!r}: {folder} cannot be read ({exc}); pull it again: "
                       f"labelloop models pull {name}") from None
    if found != row["sha256"]:
        raise UseError(f"model {name!r}: {folder} hashes to {found}, not the recorded {row['sha256']} "
                       f"(changed or damaged); pull it again: labelloop models pull {name}")
    cfg_path = ws.config_path
    try:
        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UseError(f"{cfg_path}: cannot be read as YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UseError(f"{cfg_path}: expected a mapping at the top level")
    new = copy.deepcopy(raw)
    pre = dict(new.get("prelabeler") or {})
    spec = {"path": row["path"], "sha256": row["sha256"]}
    changed: list[str] = []
    role = row["role"]
    if role == "sam3":
        pre["backend"] = "sam3"
        old3 = pre.get("sam3")
        pre["sam3"] = {**(old3 if isinstance(old3, dict) else {}), **spec}
    else:
        found_spec = pre.get(role)
        old: dict[str, Any] = found_spec if isinstance(found_spec, dict) else {}
        default_kind = "grounding-dino" if role == "detector" else "sam"
        keep = old if old.get("kind", default_kind) == kind else {}
        pre[role] = {**keep, "kind": kind, **spec}
        pre["backend"] = "foundation"
    if role in ("detector", "sam3"):
        for c in new.get("categories") or []:
            if isinstance(c, dict) and c.get("detector") != kind:
                c["detector"] = kind
                changed.append(str(c.get("name")))
    new["prelabeler"] = pre
    _validate_and_write(cfg_path, new, f"using {name!r} as the {role}")
    stored = registry.set_current(ws, name, by=by, reason="labelloop models use")
    return UseResult(stored, cfg_path, pre, changed)


def _validate_and_write(cfg_path: Path, new: dict[str, Any], what: str) -> None:
    try:
        ProjectConfig.model_validate(new)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())
        raise UseError(f"{cfg_path}: {what} would make the config invalid: {problems}") from None
    target = cfg_path.resolve()  # a symlinked labelloop.yaml: its target is updated, the link kept
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError as exc:
        raise UseError(f"{cfg_path}: cannot be read ({exc})") from None
    if not os.access(target, os.W_OK) or not mode & stat.S_IWUSR:
        raise UseError(f"{cfg_path}: is read-only (mode {mode:o}); make it writable to change the pre-labeler, "
                       "or edit it by hand")
    fd, tmp = tempfile.mkstemp(prefix=".labelloop.yaml.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(new, fh, sort_keys=False, allow_unicode=True)
        os.chmod(tmp, mode)  # the file keeps its permissions (mkstemp makes 0600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _folder_sha256(folder: Path) -> str:
    rec = folder / RECORD
    try:
        sha = json.loads(rec.read_text(encoding="utf-8")).get("sha256")
        if isinstance(sha, str) and len(sha) == 64:
            return sha  # the pull's record; the pre-labeler checks it again when it loads
    except (OSError, ValueError, AttributeError):
        pass
    return sha256_path(folder)


def pulled_prelabeler(models_dir: Path | None, backend: str) -> tuple[dict[str, Any], str]:
    """The ``prelabeler`` mapping and the categories' ``detector`` kind that run ``backend``
    (``sam3`` or ``foundation``) with models pulled into ``models_dir`` (``$LABELLOOP_MODELS``),
    each role's first folder of :data:`DEMO_MODELS` that exists; paths absolute, sha256 from the
    pull's record (else hashed).

    Raises:
        UseError: one line saying which model is missing and the command that pulls it.
    """
    if backend not in DEMO_MODELS:
        raise UseError(f"prelabeler {backend!r}: not one of {sorted(DEMO_MODELS)}")
    pre: dict[str, Any] = {"backend": backend}
    kind = "sam3"
    for role, names in DEMO_MODELS[backend].items():
        found = next((models_dir / n for n in names if models_dir is not None and (models_dir / n).is_dir()), None)
        if found is None:
            where = f"in {models_dir}" if models_dir is not None else "($LABELLOOP_MODELS is not set)"
            raise UseError(f"--prelabeler {backend}: no pulled {role} {where}: run `export "
                           f"LABELLOOP_MODELS=~/labelloop-models; labelloop models pull {names[0]}` "
                           f"(in any workspace), then run the demo again")
        spec: dict[str, Any] = {"path": str(found), "sha256": _folder_sha256(found)}
        if role != "sam3":
            entry = catalog.CATALOG[found.name]
            spec = {"kind": entry.spec_kind, **spec}
            if role == "detector":
                kind = str(entry.spec_kind)
        pre[role] = spec
    return pre, kind


def write_prelabeler(ws: Workspace, prelabeler: dict[str, Any], detector_kind: str) -> None:
    """Merge ``prelabeler`` into ``labelloop.yaml``'s ``prelabeler`` mapping and set every
    category's ``detector`` to ``detector_kind`` (validated, then written atomically).

    Raises:
        UseError: the file is unreadable or the result would be invalid.
    """
    raw = yaml.safe_load(ws.config_path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise UseError(f"{ws.config_path}: expected a mapping at the top level")
    raw["prelabeler"] = {**(raw.get("prelabeler") or {}), **prelabeler}
    for c in raw.get("categories") or []:
        if isinstance(c, dict):
            c["detector"] = detector_kind
    _validate_and_write(ws.config_path, raw, f"prelabeler {prelabeler.get('backend')}")
