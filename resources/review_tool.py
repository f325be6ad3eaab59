"""The review tool resource: Label Studio, through files (embedded default)."""

from __future__ import annotations

import dagster as dg


class LabelStudioFilesResource(dg.ConfigurableResource):
    """Label Studio through files: import files (tasks.json + label_config.xml) are written to
    ``review_out/<batch>/``; JSON / JSON-MIN exports are read from ``review_inbox/``.

    Set LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    to the workspace root so Label Studio serves the images the tasks reference.
    """

    tool: str = "label-studio"
