"""The models table: every checkpoint a workspace knows, pulled from a hub or trained here.

One table, ``tables/models/models.parquet`` (schema :data:`labelloop.tables.schemas.MODELS`, one
:class:`~labelloop.tables.schemas.ModelRow` per model name; path from
:func:`labelloop.workspace.repo.models_path`), written atomically under a file lock
(``.labelloop/models.lock``), so ``labelloop models pull`` and a training run never lose each
other's rows.

Columns (all strings unless said; ``None`` where not known):

- ``name``: unique key; a catalog name (``grounding-dino-tiny``, :mod:`labelloop.models.catalog`)
  or a trained candidate's name.
- ``family`` (``grounding-dino``, ``owlv2``, ``florence-2``, ``sam``, ``sam-hq``, ``sam2``,
  ``sam3``, ...), ``role``: the ``labelloop.yaml`` slot the model fills (``ROLES``:
  ``detector`` = ``prelabeler.detector``, ``segmenter`` = ``prelabeler.segmenter``, ``sam3`` =
  ``prelabeler.sam3``).
- ``kind``: ``pretrained`` | ``candidate`` (``KINDS``).
- ``path``: the checkpoint file or ``save_pretrained`` directory, workspace-relative when it lies
  inside the workspace, else absolute (a shared ``$LABELLOOP_MODELS``); ``sha256``:
  :func:`labelloop.models.hashing.sha256_path` of it, the value ``labelloop.yaml`` names.
- ``source``, ``revision`` (the hub commit), ``licence``, ``size_bytes`` (int),
  ``upstream_sha256_json`` (``{file: sha256}`` the source declared: the hub's LFS sha256 of each
  file, or a catalog pin), ``added_at`` (ISO 8601 UTC).
- ``status`` (``STATUSES``): ``available`` | ``current`` (the model ``labelloop.yaml`` uses
  for its role: at most one per role) | ``candidate`` (trained, not promoted) | ``retired``.
- fine-tuning columns, null for pretrained models: ``trained_on_release``, ``labels_sha256``,
  ``metrics_json``, ``card_path``, ``promoted_by``, ``promoted_reason``, ``promoted_at``.

Public functions:

- :func:`read_models` ``(ws) -> list[ModelRow]``: every row, by name.
- :func:`get_model` ``(ws, name) -> ModelRow | None``.
- :func:`new_row` ``(name=..., family=..., role=..., kind=..., path=..., sha256=..., **columns)``:
  a complete row, every other column null, ``added_at`` now, ``status`` by kind.
- :func:`upsert_model` ``(ws, row) -> ModelRow``: insert or replace the row of ``row["name"]``.
- :func:`update_model` ``(ws, name, **columns) -> ModelRow``: change some columns of one row.
- :func:`set_current` ``(ws, name, by=None, reason=None) -> ModelRow``: make it its role's
  current model (the previous one becomes ``available``), recording who and why.
- :func:`current_model` ``(ws, role) -> ModelRow | None``.
- :func:`models_dir` ``(ws) -> Path``: where pulled models go.

Every function raises :class:`ModelRegistryError` (a ``ValueError``) for a row that breaks the
rules above, naming the table and the problem.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from filelock import FileLock

from labelloop.tables.schemas import MODELS, ModelRow
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace

#: ``$LABELLOOP_MODELS``: a models directory shared by every workspace (default: ``<workspace>/models``).
ENV_MODELS = "LABELLOOP_MODELS"
KINDS = ("pretrained", "candidate")
STATUSES = ("available", "current", "candidate", "retired")
ROLES = ("detector", "segmenter", "sam3")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REQUIRED = ("name", "family", "role", "kind", "path", "sha256", "added_at", "status")


class ModelRegistryError(ValueError):
    """A models-table row breaks a rule (unknown kind, status or role; a bad sha256; an unknown name)."""


def now_utc() -> str:
    """The current time, ISO 8601 UTC to the second (``2026-01-31T12:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def models_dir(ws: Workspace) -> Path:
    """Where ``labelloop models pull`` puts models: ``$LABELLOOP_MODELS`` when set (shared by
    workspaces; ``~`` expanded), else ``<workspace>/models``."""
    shared = os.environ.get(ENV_MODELS)
    return Path(shared).expanduser().resolve() if shared else ws.root / "models"


def stored_path(ws: Workspace, path: str | os.PathLike) -> str:
    """How a model path is stored (in the table and ``labelloop.yaml``): workspace-relative POSIX
    when it lies inside the workspace, else absolute."""
    p = Path(path).expanduser().resolve()
    return p.relative_to(ws.root).as_posix() if p.is_relative_to(ws.root) else str(p)


def new_row(*, name: str, family: str, role: str, kind: str, path: str, sha256: str, **columns: Any) -> ModelRow:
    """A complete :class:`~labelloop.tables.schemas.ModelRow`: the given columns, ``added_at``
    now unless given, ``status`` ``candidate`` for kind candidate else ``available`` unless
    given, every other column None.

    Raises:
        ModelRegistryError: a column name that is not in the table.
    """
    unknown = sorted(set(columns) - set(MODELS.names))
    if unknown:
        raise ModelRegistryError(f"models table: no column {unknown} (columns: {MODELS.names})")
    row: dict[str, Any] = {n: None for n in MODELS.names}
    row.update(name=name, family=family, role=role, kind=kind, path=path, sha256=sha256, added_at=now_utc(),
               status="candidate" if kind == "candidate" else "available")
    row.update(columns)
    return cast(ModelRow, row)


def check_row(row: ModelRow) -> ModelRow:
    """``row`` if it follows the table's rules (module docstring).

    Raises:
        ModelRegistryError: a required column is empty, or kind / status / role / sha256 is not
            one of the allowed values; the message names the model and the column.
    """
    where = f"models table, model {row.get('name')!r}"
    missing = [k for k in _REQUIRED if not row.get(k)]
    if missing:
        raise ModelRegistryError(f"{where}: {missing} must be set")
    for col, allowed in (("kind", KINDS), ("status", STATUSES), ("role", ROLES)):
        if row[col] not in allowed:  # type: ignore[literal-required]
            raise ModelRegistryError(f"{where}: {col} {row[col]!r} is not one of {allowed}")  # type: ignore[literal-required]
    if not _SHA256.fullmatch(row["sha256"]):
        raise ModelRegistryError(f"{where}: sha256 {row['sha256']!r} is not 64 lowercase hex digits")
    if row["status"] == "candidate" and row["kind"] != "candidate":
        raise ModelRegistryError(f"{where}: status candidate is for kind candidate (a trained model), not {row['kind']!r}")
    return row


def read_models(ws: Workspace) -> list[ModelRow]:
    """Every row of the models table, sorted by name (none before the first pull or training)."""
    return sorted(repo.read_model_rows(ws), key=lambda r: r["name"])


def get_model(ws: Workspace, name: str) -> ModelRow | None:
    """The row named ``name``, or None."""
    return next((r for r in read_models(ws) if r["name"] == name), None)


def trained_on_line(row: ModelRow) -> str | None:
    """The provenance line of a model trained here (a fine-tuned candidate's row):
    ``"model NAME, trained on dataset-vN (labels sha256 <12 hex>)"``; None for a row without
    ``trained_on_release`` (a pulled or embedded model)."""
    if not row.get("trained_on_release"):
        return None
    return (f"model {row['name']}, trained on {row['trained_on_release']} "
            f"(labels sha256 {(row.get('labels_sha256') or '?')[:12]})")


def trained_on_lines(ws: Workspace) -> dict[str, str]:
    """``{checkpoint sha256: trained_on_line}`` of every model of the table trained here
    (empty when none was); what the audit summary and ``labelloop lineage`` print beside a
    fine-tuned model's predictions."""
    out: dict[str, str] = {}
    for row in read_models(ws):
        line = trained_on_line(row)
        if line:
            out[row["sha256"]] = line
    return out


def current_model(ws: Workspace, role: str) -> ModelRow | None:
    """The ``current`` model of ``role`` (``ROLES``), or None.

    Raises:
        ModelRegistryError: ``role`` is not one of ``ROLES``.
    """
    if role not in ROLES:
        raise ModelRegistryError(f"models table: role {role!r} is not one of {ROLES}")
    return next((r for r in read_models(ws) if r["role"] == role and r["status"] == "current"), None)


def _lock(ws: Workspace) -> FileLock:
    lock = repo.models_lock_path(ws)
    lock.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock), timeout=120)


def _write(ws: Workspace, rows: dict[str, ModelRow], changed: ModelRow) -> ModelRow:
    """Check ``changed``, keep one current per role (``changed`` wins), write the table."""
    check_row(changed)
    rows[changed["name"]] = changed
    if changed["status"] == "current":
        for name, r in rows.items():
            if name != changed["name"] and r["role"] == changed["role"] and r["status"] == "current":
                rows[name] = cast(ModelRow, {**r, "status": "available"})
    repo.write_model_rows(ws, [rows[n] for n in sorted(rows)])
    return changed


def upsert_model(ws: Workspace, row: ModelRow) -> ModelRow:
    """Insert ``row`` or replace the stored row of the same ``name``; a row made ``current``
    demotes its role's previous current model to ``available``. Returns the stored row.

    Raises:
        ModelRegistryError: see :func:`check_row`.
        OSError: the table cannot be written (the old table stays).
    """
    full = cast(ModelRow, {n: row.get(n) for n in MODELS.names})
    with _lock(ws):
        rows = {r["name"]: r for r in repo.read_model_rows(ws)}
        return _write(ws, rows, full)


def update_model(ws: Workspace, name: str, **columns: Any) -> ModelRow:
    """Change ``columns`` of the row named ``name`` (the others stay). Returns the stored row.

    Raises:
        ModelRegistryError: no model ``name``, an unknown column, or the changed row breaks a rule.
    """
    unknown = sorted(set(columns) - set(MODELS.names))
    if unknown:
        raise ModelRegistryError(f"models table: no column {unknown} (columns: {MODELS.names})")
    with _lock(ws):
        rows = {r["name"]: r for r in repo.read_model_rows(ws)}
        if name not in rows:
            raise ModelRegistryError(f"models table: no model {name!r} (known: {sorted(rows)})")
        return _write(ws, rows, cast(ModelRow, {**rows[name], **columns}))


def set_current(ws: Workspace, name: str, by: str | None = None, reason: str | None = None) -> ModelRow:
    """Make ``name`` its role's current model (status ``current``; the previous one becomes
    ``available``), with ``promoted_by``, ``promoted_reason`` and ``promoted_at`` (now) recorded.

    Raises:
        ModelRegistryError: no model ``name``, or it is retired.
    """
    row = get_model(ws, name)
    if row is not None and row["status"] == "retired":
        raise ModelRegistryError(f"models table: model {name!r} is retired; set its status first")
    return update_model(ws, name, status="current", promoted_by=by, promoted_reason=reason, promoted_at=now_utc())
