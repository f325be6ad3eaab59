"""A running Label Studio server, through ``label-studio-sdk`` (the live review tool).

:class:`LabelStudioServer` wraps the SDK's ``LabelStudio`` client with the few calls the review
round trip needs (Label Studio 1.23 REST API, docs "API reference"): find or create a project
with our labeling config, connect a local-files import storage so the server can serve our
images, import tasks with predictions, list tasks changed since a time, and export tasks in
Label Studio's ``JSON`` format (the same format as an export file, so pulled work goes through
:func:`labelloop.formats.labelstudio.reader.parse_export` like a file does).

Authentication: ``api_key`` is a *personal access token* (Label Studio: Account & Settings ->
Personal Access Token; a JWT refresh token that the SDK exchanges for short-lived access
tokens at ``/api/token/refresh/``) or, where the organization allows them, a legacy token.
Label Studio 1.23 refuses legacy tokens by default (Organization -> API Tokens Settings).

Timestamps are Label Studio's ``updated_at`` in UTC, written ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
(microseconds; the data manager's filter format, so they sort as strings).
"""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from typing import Any, Callable, overload
from urllib.parse import urlsplit

from labelloop.review.live.webhook import PULL_ACTIONS, TOKEN_HEADER

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # Label Studio data manager's Datetime filter format
#: Tasks per import request.
IMPORT_CHUNK = 500  # tasks per import request
#: Task ids per export request (they travel in the query string).
EXPORT_CHUNK = 200  # task ids per export request (they travel in the query string)


class LabelStudioServerError(RuntimeError):
    """The server refused a call or could not be reached; the message names the server, the call
    and the reason (HTTP status and the server's own words when it gave any)."""


@overload
def format_ts(value: None) -> None: ...
@overload
def format_ts(value: dt.datetime | str) -> str: ...
@overload
def format_ts(value: dt.datetime | str | None) -> str | None: ...
def format_ts(value: dt.datetime | str | None) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC) of a datetime or ISO 8601 string; None stays None.
    A naive datetime is taken as UTC (Label Studio stores UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime(TS_FORMAT)


def same_label_config(a: str, b: str) -> bool:
    """Whether two labeling configs are the same XML (C14N 2.0, whitespace between tags ignored);
    a config that does not parse equals only an identical string."""
    try:
        return ET.canonicalize(a, strip_text=True) == ET.canonicalize(b, strip_text=True)
    except ET.ParseError:
        return a == b


def config_labels(xml: str) -> set[tuple[str, str]]:
    """``{(control name, label value)}`` of a labeling config: the ``value`` of every child of a
    named tag (``<RectangleLabels name="label"><Label value="cat"/>`` -> ``("label", "cat")``);
    an unparsable config gives the empty set."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return set()
    return {(name, value) for el in root.iter() if (name := el.get("name"))
            for child in el if (value := child.get("value")) is not None}


def server_host(url: str) -> str:
    """``host[:port]`` of a server URL, lower case, without user info: the ``<host>`` of a review
    source ``label-studio/<host>/project-<id>``.

    Raises:
        ValueError: not an ``http://`` or ``https://`` URL with a host.
    """
    parts = urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Label Studio URL {url!r} is not an http(s)://host[:port] URL")
    host = parts.hostname.lower()
    return f"{host}:{parts.port}" if parts.port else host


def _reason(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if status is None:
        return f"{type(exc).__name__}: {exc}"
    text = body if isinstance(body, str) else json.dumps(body, default=str) if body is not None else ""
    hint = ""
    if status == 401:
        hint = (" (the API token was refused: use a personal access token from Account & Settings, or enable "
                "legacy tokens for the organization)")
    return f"HTTP {status}{hint}: {text[:500]}"


class LabelStudioServer:
    """One Label Studio server, through the SDK.

    Args:
        url: ``http(s)://host[:port]`` of the server (a path prefix is kept).
        api_key: personal access token (JWT refresh token) or legacy token.
        timeout: seconds per HTTP request.

    Raises:
        ValueError: a malformed URL or an empty ``api_key``.
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 60.0):
        self.host = server_host(url)
        if not api_key or not str(api_key).strip():
            raise ValueError(f"no API token for Label Studio at {url}: set LABEL_STUDIO_API_KEY")
        from label_studio_sdk import (
            LabelStudio,  # heavy (seconds to import): only when a brush mask or a live server is used
        )

        self.url = str(url).strip().rstrip("/")
        self.client = LabelStudio(base_url=self.url, api_key=str(api_key).strip(), timeout=timeout)

    # ------------------------------------------------------------------ plumbing

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``; any SDK or network error becomes :class:`LabelStudioServerError`
        naming the server and ``what``."""
        try:
            return fn(*args, **kwargs)
        except LabelStudioServerError:
            raise
        except Exception as exc:  # noqa: BLE001 - ApiError, httpx errors, pydantic errors
            # from None: the message carries the reason; runners that report the innermost cause
            # would otherwise show the SDK's raw headers
            raise LabelStudioServerError(f"Label Studio at {self.url}: {what} failed: {_reason(exc)}") from None

    def source(self, project_id: int) -> str:
        """Review source of a project on this server: ``label-studio/<host[:port]>/project-<id>``
        (annotation identity: two servers' or projects' equal annotation ids never collide)."""
        return f"label-studio/{self.host}/project-{int(project_id)}"

    def project_url(self, project_id: int) -> str:
        """The project's page in Label Studio's web UI."""
        return f"{self.url}/projects/{int(project_id)}/data"

    def whoami(self) -> dict:
        """``{"id", "email"}`` of the token's user; checks URL and token in one call."""
        me = self.call("GET /api/current-user/whoami", self.client.users.whoami)
        return {"id": me.id, "email": me.email}

    # ------------------------------------------------------------------ projects

    def find_project(self, title: str) -> dict | None:
        """The project titled exactly ``title`` (the lowest id if several), as
        ``{"id", "title", "label_config", "model_version", "maximum_annotations", "expert_instruction"}``;
        None when there is none."""
        found = [p for p in self.call(f"list projects titled {title!r}", lambda: list(self.client.projects.list(
            title=title, page_size=100))) if p.title == title]
        if not found:
            return None
        p = min(found, key=lambda p: p.id)
        return {"id": p.id, "title": p.title, "label_config": p.label_config, "model_version": p.model_version,
                "maximum_annotations": p.maximum_annotations or 1,
                "expert_instruction": getattr(p, "expert_instruction", None)}

    def ensure_project(self, title: str, label_config: str, description: str = "") -> dict:
        """Find the project titled ``title`` or create it with ``label_config``.

        An existing project whose labeling config differs (:func:`same_label_config`) gets ours
        when ours keeps all of its labels (:func:`config_labels`; new categories are added);
        Label Studio 1.23 would accept a config that drops labels its annotations use, so that is
        refused here. Returns the project dict of :meth:`find_project` plus ``created`` and
        ``config_updated`` (bools).

        Raises:
            LabelStudioServerError: the server refused the project or its config, or the existing
                config has labels ours lacks.
        """
        project = self.find_project(title)
        if project is None:
            p = self.call(f"create project {title!r}", self.client.projects.create, title=title,
                          label_config=label_config, description=description, show_collab_predictions=True)
            return {"id": p.id, "title": p.title, "label_config": p.label_config, "model_version": p.model_version,
                    "maximum_annotations": p.maximum_annotations or 1,
                    "expert_instruction": getattr(p, "expert_instruction", None), "created": True, "config_updated": False}
        updated = not same_label_config(project["label_config"] or "", label_config)
        dropped = sorted(config_labels(project["label_config"] or "") - config_labels(label_config))
        if updated and dropped:
            raise LabelStudioServerError(
                f"Label Studio at {self.url}: project {project['id']} ({title!r}) has labels that labelloop's "
                f"categories lack: {', '.join(f'{c}/{v}' for c, v in dropped)}; replacing its config would hide "
                "annotations made with them. Add the categories to labelloop.yaml or use another project title")
        if updated:
            self.call(f"update the labeling config of project {project['id']}", self.client.projects.update,
                      project["id"], label_config=label_config)
            project["label_config"] = label_config
        return project | {"created": False, "config_updated": updated}

    def set_instructions(self, project_id: int, html: str) -> None:
        """Make ``html`` the project's instructions (``expert_instruction``, shown to annotators
        before they label: ``show_instruction`` on); labelloop sets the labeling guidelines there
        (:func:`labelloop.workspace.guidelines.guidelines_html`)."""
        self.call(f"set the instructions of project {project_id}", self.client.projects.update, project_id,
                  expert_instruction=html, show_instruction=True)

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Make ``model_version`` the project's model version: the predictions Label Studio shows
        reviewers as pre-annotations are those of this version."""
        self.call(f"set model_version of project {project_id}", self.client.projects.update, project_id,
                  model_version=model_version, show_collab_predictions=True)

    def ensure_local_storage(self, project_id: int, path: str) -> int:
        """A local-files import storage of the project covering the server-side directory ``path``
        (needed for ``/data/local-files/?d=...`` URLs to be served). Never synced: it only grants
        access. Returns the storage id (an existing one whose path is ``path`` or above it).

        Raises:
            LabelStudioServerError: e.g. ``path`` is not under the server's
                LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT or does not exist on the server.
        """
        path = path.rstrip("/") or "/"
        for st in self.call(f"list local storages of project {project_id}", self.client.import_storage.local.list,
                            project=project_id):
            root = (st.path or "").rstrip("/")
            if root and (path == root or path.startswith(root + "/")):
                return st.id
        st = self.call(f"add local storage {path} to project {project_id}", self.client.import_storage.local.create,
                       project=project_id, path=path, title=f"labelloop {path}"[:2048], use_blob_urls=False,
                       description="images of a labelloop workspace (granted, never synced)")
        return st.id

    def ensure_overlap(self, project_id: int, reviewers: int) -> bool:
        """Let tasks of the project take ``reviewers`` annotations from distinct annotators: the
        project's ``maximum_annotations`` is raised to ``reviewers`` (never lowered) with
        ``overlap_cohort_percentage`` 100, so Label Studio does not pick its own random cohort;
        which tasks get that overlap is set per task (:meth:`sync_task_overlaps`). Returns
        whether the project was changed."""
        p = self.call(f"get project {project_id}", self.client.projects.get, project_id)
        if reviewers <= 1 or (p.maximum_annotations or 1) >= reviewers and p.overlap_cohort_percentage == 100:
            return False
        self.call(f"set maximum_annotations of project {project_id}", self.client.projects.update, project_id,
                  maximum_annotations=max(reviewers, p.maximum_annotations or 1), overlap_cohort_percentage=100)
        return True

    def sync_task_overlaps(self, project_id: int) -> dict[int, int]:
        """Per-task overlap (how many distinct annotators a task takes) from the task's own data:
        ``data.reviewers_required`` (labelloop's double review), else 1. Tasks whose overlap
        differs are updated (``PATCH /api/tasks/<id>`` ``overlap``). Returns ``{task id: overlap}``
        of every task of the project."""
        pager = self.call(f"list tasks of project {project_id}", self.client.tasks.list, project=project_id,
                          fields="task_only", page_size=500)
        out = {}
        for t in self.call(f"list tasks of project {project_id}", list, pager):
            want = (t.data or {}).get("reviewers_required") or 1
            want = int(want) if isinstance(want, int) and not isinstance(want, bool) and want > 0 else 1
            if t.overlap != want:
                self.call(f"set the overlap of task {t.id}", self.client.tasks.update, t.id, overlap=want)
            out[t.id] = want
        return out

    def ensure_webhook(self, project_id: int, url: str, secret: str) -> int:
        """A webhook of the project posting annotation events to ``url`` with the header
        ``X-Labelloop-Token: <secret>`` (:mod:`labelloop.review.live.webhook`); an existing one with
        that URL is updated (headers, actions) and kept. Returns its id.

        Raises:
            LabelStudioServerError: e.g. the server refuses a private address
                (its ``SSRF_PROTECTION_ENABLED``).
        """

        fields = {"headers": {TOKEN_HEADER: secret}, "actions": list(PULL_ACTIONS), "send_payload": True,
                  "send_for_all_actions": False, "is_active": True}
        for w in self.call(f"list webhooks of project {project_id}", self.client.webhooks.list, project=str(project_id)):
            if w.url == url and w.project == project_id:
                self.call(f"update webhook {w.id}", self.client.webhooks.update, w.id, url=url, **fields)
                return w.id
        w = self.call(f"add a webhook to project {project_id}", self.client.webhooks.create, url=url,
                      project=project_id, **fields)
        return w.id

    # ------------------------------------------------------------------ tasks

    def tasks_by_image_id(self, project_id: int) -> dict[str, int]:
        """``image_id -> task id`` of the project's tasks whose data carry our ``image_id``
        (the lowest task id when an image was imported twice)."""
        out: dict[str, int] = {}
        pager = self.call(f"list tasks of project {project_id}", self.client.tasks.list, project=project_id,
                          fields="task_only", page_size=500)
        for t in self.call(f"list tasks of project {project_id}", list, pager):
            iid = (t.data or {}).get("image_id")
            if isinstance(iid, str) and (iid not in out or t.id < out[iid]):
                out[iid] = t.id
        return out

    def prediction_versions(self, project_id: int) -> dict[int, set[str]]:
        """``task id -> {model_version}`` of the project's predictions."""
        out: dict[int, set[str]] = {}
        for p in self.call(f"list predictions of project {project_id}", self.client.predictions.list,
                           project=project_id):
            out.setdefault(p.task, set()).add(p.model_version or "")
        return out

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Import tasks (with their ``predictions``) into the project, :data:`IMPORT_CHUNK` per
        request; returns the new task ids in order."""
        ids: list[int] = []
        for i in range(0, len(tasks), IMPORT_CHUNK):
            r = self.call(f"import {len(tasks[i:i + IMPORT_CHUNK])} tasks into project {project_id}",
                          self.client.projects.import_tasks, project_id, request=tasks[i:i + IMPORT_CHUNK],
                          commit_to_project=True, return_task_ids=True)
            ids += list(r.task_ids or [])
        return ids

    def add_prediction(self, task_id: int, prediction: dict) -> int:
        """Add one prediction (``{"model_version", "score", "result"}``) to an existing task."""
        p = self.call(f"add a prediction to task {task_id}", self.client.predictions.create, task=task_id,
                      result=prediction.get("result") or [], score=prediction.get("score"),
                      model_version=prediction.get("model_version"))
        return p.id

    def _dm_query(self, since: str | None, newest_first: bool) -> str:
        q: dict[str, Any] = {"ordering": ["-tasks:updated_at" if newest_first else "tasks:updated_at"]}
        if since:
            q["filters"] = {"conjunction": "and", "items": [
                {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}]}
        return json.dumps(q)

    def changed_tasks(self, project_id: int, since: str | None = None) -> list[tuple[int, str]]:
        """``[(task id, updated_at)]`` of tasks updated after ``since`` (all when None), oldest
        first. Label Studio moves a task's ``updated_at`` whenever one of its annotations is
        created, updated or cancelled."""
        pager = self.call(f"list tasks of project {project_id} updated after {since}", self.client.tasks.list,
                          project=project_id, fields="task_only", page_size=500,
                          query=self._dm_query(format_ts(since), newest_first=False))
        tasks = self.call(f"list tasks of project {project_id}", list, pager)
        return [(t.id, format_ts(t.updated_at)) for t in tasks]

    def newest_update(self, project_id: int) -> str | None:
        """The latest task ``updated_at`` in the project (one-row query), None without tasks."""
        page = self.call(f"newest task of project {project_id}", self.client.tasks.list, project=project_id,
                         fields="task_only", page_size=1, query=self._dm_query(None, newest_first=True))
        items = page.items or []
        return format_ts(items[0].updated_at) if items else None

    def export_json(self, project_id: int, task_ids: list[int]) -> list[dict]:
        """Label Studio ``JSON`` export (tasks with ``annotations``) of the annotated tasks among
        ``task_ids``, :data:`EXPORT_CHUNK` ids per request (``GET /api/projects/<id>/export``).

        Raises:
            LabelStudioServerError: the call failed, or the server exported tasks not asked for
                (it ignored the id filter) or something that is not a JSON list of tasks.
        """
        out: list[dict] = []
        for i in range(0, len(task_ids), EXPORT_CHUNK):
            chunk = [str(t) for t in task_ids[i:i + EXPORT_CHUNK]]
            # the server reads the task ids from ``ids[]`` (data_export/api.py); SDK 2.1.2 sends them as
            # ``ids``, which the server ignores (it would export every task), so they go as extra params
            raw = self.call(f"export {len(chunk)} tasks of project {project_id}", lambda: b"".join(
                self.client.projects.exports.download_sync(
                    project_id, export_type="JSON", download_all_tasks=False,
                    request_options={"additional_query_parameters": {"ids[]": chunk}})))
            try:
                part = json.loads(raw)
            except ValueError as exc:
                raise LabelStudioServerError(
                    f"Label Studio at {self.url}: the export of project {project_id} is not JSON ({exc})") from None
            if not isinstance(part, list):
                raise LabelStudioServerError(
                    f"Label Studio at {self.url}: the export of project {project_id} is not a list of tasks")
            extra = sorted({str(t.get("id")) for t in part if isinstance(t, dict)} - set(chunk))
            if extra:
                raise LabelStudioServerError(
                    f"Label Studio at {self.url}: the export of project {project_id} ignored the task filter "
                    f"(tasks {', '.join(extra[:10])} were not asked for)")
            out += part
        return out
