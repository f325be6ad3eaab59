"""The pre-labeler resource: builds the configured ``PreLabeler`` backend once per process."""

from __future__ import annotations

import functools

import dagster as dg
from pydantic import Field

from labelloop.config import ProjectConfig
from labelloop.prelabel.opencv import OpenCVPreLabeler
from labelloop.prelabel.protocol import PreLabeler


@functools.lru_cache(maxsize=4)
def _build(config_json: str) -> PreLabeler:
    cfg = ProjectConfig.model_validate_json(config_json)
    if cfg.prelabeler.backend == "opencv":
        return OpenCVPreLabeler(cfg)
    raise ValueError(f"unknown pre-labeler backend {cfg.prelabeler.backend!r}")


class PreLabelerResource(dg.ConfigurableResource):
    """Selects and builds the pre-labeler from the project's ``prelabeler`` settings.

    ``device`` overrides the config (``cpu``; ``cuda`` for GPU backends). The embedded default
    is OpenCV's classical detectors on CPU (weights inside the installed wheel).
    """

    device: str | None = Field(None, description="override labelloop.yaml prelabeler.device")

    def get(self, config: ProjectConfig) -> PreLabeler:
        if self.device:
            config = config.model_copy(update={"prelabeler": config.prelabeler.model_copy(update={"device": self.device})})
        return _build(config.model_dump_json())
