"""The pre-labeler resource: builds the configured ``PreLabeler`` backend once per process."""

from __future__ import annotations

import functools

import dagster as dg
from pydantic import Field

from labelloop.prelabel.backends.opencv import OpenCVPreLabeler
from labelloop.prelabel.protocol import PreLabeler
from labelloop.workspace.config import ProjectConfig


@functools.lru_cache(maxsize=4)
def _build(config_json: str, root: str | None) -> PreLabeler:
    cfg = ProjectConfig.model_validate_json(config_json)
    if cfg.prelabeler.backend == "opencv":
        return OpenCVPreLabeler(cfg)
    if cfg.prelabeler.backend == "foundation":
        try:
            from labelloop.prelabel.backends.foundation import FoundationPreLabeler  # imports torch: the gpu extra

            return FoundationPreLabeler(cfg, root)
        except ModuleNotFoundError as exc:
            raise RuntimeError(f"prelabeler.backend foundation needs torch, torchvision, transformers and "
                               f"segment-anything ({exc}): pip install 'labelloop[gpu]'") from None
    if cfg.prelabeler.backend == "sam3":
        try:
            from labelloop.prelabel.backends.sam3 import Sam3PreLabeler  # imports torch: the gpu extra

            return Sam3PreLabeler(cfg, root)
        except ModuleNotFoundError as exc:
            raise RuntimeError(f"prelabeler.backend sam3 needs torch, torchvision and transformers ({exc}): "
                               "pip install 'labelloop[gpu]'") from None
    if cfg.prelabeler.backend == "rtdetrv2":
        try:
            from labelloop.training.backend import RTDetrV2PreLabeler  # imports torch: the gpu extra

            return RTDetrV2PreLabeler(cfg, root)
        except ModuleNotFoundError as exc:
            raise RuntimeError(f"prelabeler.backend rtdetrv2 needs torch and transformers ({exc}): "
                               "pip install 'labelloop[gpu]'") from None
    raise ValueError(f"unknown pre-labeler backend {cfg.prelabeler.backend!r}")


class PreLabelerResource(dg.ConfigurableResource):
    """Selects and builds the pre-labeler from the project's ``prelabeler`` settings.

    ``backend: opencv`` (default) is OpenCV's classical detectors on CPU (weights inside the
    installed wheel). ``backend: foundation`` is Grounding DINO + SAM from local checkpoints
    (labelloop.prelabel.backends.foundation), ``backend: sam3`` SAM 3 from a local checkpoint
    (labelloop.prelabel.backends.sam3); their weights load on first use, so asking for ``model_id``
    (review, labels, QA, the CLI) never loads them. ``device`` overrides the config (``cpu``,
    ``cuda``, ``cuda:N``, ``auto``).
    """

    device: str | None = Field(None, description="override labelloop.yaml prelabeler.device")

    def get(self, config: ProjectConfig, root: str | None = None) -> PreLabeler:
        """The backend for ``config``; relative checkpoint paths resolve against ``root`` (the
        workspace root; default the current directory). Cached per (config, root)."""
        if self.device:
            config = config.model_copy(update={"prelabeler": config.prelabeler.model_copy(update={"device": self.device})})
        return _build(config.model_dump_json(), str(root) if root is not None else None)
