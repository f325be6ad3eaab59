"""The review tool resource: Label Studio, through files (embedded default), or a live Label
Studio server through label-studio-sdk (:class:`LabelStudioServerResource`)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from labelloop.review.live.server import LabelStudioServer
from labelloop.review.live.sync import default_title, newest_update, pull_reviews, push_batch
from labelloop.workspace.layout import Workspace


class LabelStudioFilesResource(dg.ConfigurableResource):
    """Label Studio through files: import files (tasks.json + label_config.xml) are written to
    ``review_out/<batch>/``; JSON / JSON-MIN exports are read from ``review_inbox/``.

    Set LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    to the workspace root so Label Studio serves the images the tasks reference.
    """

    tool: str = "label-studio"

    @property
    def is_live(self) -> bool:
        """False: reviewers import ``review_out/<batch>/tasks.json`` themselves."""
        return False

    def push_batch(self, ws: Workspace, batch: str) -> dict | None:
        """Nothing to push: the files in ``review_out/<batch>/`` are the hand-off. Returns None."""
        return None

    def pull_reviews(self, ws: Workspace, full: bool = False, run_id: str | None = None) -> dict | None:
        """Nothing to pull: exports arrive as files in ``review_inbox/``. Returns None."""
        return None


class LabelStudioServerResource(LabelStudioFilesResource):
    """A running Label Studio server (label-studio-sdk): ``review_export`` also pushes the batch's
    tasks with their pre-annotations into the project, ``human_labels`` also pulls new and
    updated annotations from it (see :mod:`labelloop.review.live.sync`), and
    ``label_studio_sensor`` polls it. The files of the file route are still written and read.

    Wiring (``pipelines.definitions``): used when LABEL_STUDIO_URL is set, with
    ``url=EnvVar("LABEL_STUDIO_URL")`` and ``api_key=EnvVar("LABEL_STUDIO_API_KEY")`` (a personal
    access token; Label Studio 1.23 refuses legacy tokens unless the organization enables them).
    """

    url: str = Field(description="http(s)://host[:port] of the Label Studio server")
    api_key: str = Field(description="personal access token (or legacy token) of the Label Studio user")
    project_title: str = Field(default="", description="project to create or reuse (default: 'labelloop <project>' "
                                                       "from labelloop.yaml)")
    document_root: str = Field(default="", description="the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
                                                       "(default: the workspace root)")
    workspace_path: str = Field(default="", description="absolute path of the workspace on the server's machine "
                                                        "(default: the path here)")
    timeout_s: float = Field(default=60.0, description="seconds per HTTP request")
    overlap_s: float = Field(default=60.0, description="a pull re-reads tasks updated this long before its mark")

    @property
    def is_live(self) -> bool:
        return True

    def server(self):
        """A :class:`labelloop.review.live.server.LabelStudioServer` for this configuration."""

        return LabelStudioServer(self.url, self.api_key, timeout=self.timeout_s)

    def title(self, ws: Workspace) -> str:

        return self.project_title or default_title(ws)

    def push_batch(self, ws: Workspace, batch: str) -> dict | None:
        """:func:`labelloop.review.live.sync.push_batch` of ``batch`` into the project."""

        return push_batch(ws, self.server(), batch, title=self.title(ws), document_root=self.document_root or None,
                          workspace_path=self.workspace_path or None)

    def pull_reviews(self, ws: Workspace, full: bool = False, run_id: str | None = None) -> dict | None:
        """:func:`labelloop.review.live.sync.pull_reviews` of the project into the review store
        (``run_id``: the Dagster run pulling, stored as the reviews' ``import_run_id``)."""

        return pull_reviews(ws, self.server(), title=self.title(ws), full=full, overlap_s=self.overlap_s,
                            run_id=run_id)

    def newest_update(self, ws: Workspace) -> tuple[str, str | None] | None:
        """``(source, newest task updated_at)`` of the project, None while it does not exist."""

        return newest_update(self.server(), self.title(ws))


def push_metadata(summary: dict | None) -> dict:
    """Materialization metadata of a push (:meth:`LabelStudioFilesResource.push_batch`); {} when
    nothing was pushed (the file route)."""
    if not summary:
        return {}
    return {"label_studio/project": dg.MetadataValue.url(summary["project_url"]),
            "label_studio/source": summary["source"], "label_studio/tasks_created": summary["tasks_created"],
            "label_studio/tasks_existing": summary["tasks_existing"],
            "label_studio/predictions_added": summary["predictions_added"],
            "label_studio/double_review_tasks": summary.get("double_review_tasks", 0),
            "label_studio/model_version": summary["model_version"] or "",
            # the labeling guidelines set as the project's instructions ("" when the export had none)
            "label_studio/guidelines_sha256": summary.get("guidelines_sha256") or ""}


def pull_metadata(summary: dict | None, log=None) -> dict:
    """Materialization metadata of a pull (:meth:`LabelStudioFilesResource.pull_reviews`); logs
    each rejected annotation's reason on ``log`` (a Dagster logger); {} for the file route."""
    if not summary:
        return {}
    for r in summary.get("reject_reasons", []):
        if log is not None:
            log.warning(f"{summary['source']}: rejected {r}")
    return {"label_studio/source": summary["source"] or "", "label_studio/tasks_read": summary["tasks"],
            "label_studio/new_reviews": summary["reviews"], "label_studio/rejected": summary["rejects"],
            "label_studio/already_imported": summary["skipped"], "label_studio/mark": summary["mark"] or "",
            "label_studio/reject_reasons": "\n".join(summary.get("reject_reasons", [])[:50])}
