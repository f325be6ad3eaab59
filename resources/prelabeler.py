"""The pre-labeler resource: builds the configured ``PreLabeler`` backend once per process."""

from __future__ import annotations

import functools

import dagster as dg
from pydantic import Field

from labelloop.prelabel.backends.opencv import OpenCVPreLabeler
from labelloop.prelabel.protocol import PreLabeler
from labelloop.workspace.config import ProjectConfig

#: What each torch backend imports (named when it is missing).
GPU_NEEDS = {"foundation": "torch, torchvision, transformers and segment-anything",
             "sam3": "torch, torchvision and transformers", "rtdetrv2": "torch and transformers"}


@functools.lru_cache(maxsize=4)
def _build(config_json: str, root: str | None) -> PreLabeler:
    cfg = ProjectConfig.model_validate_json(config_json)
    if cfg.prelabeler.backend == "opencv":
        return OpenCVPreLabeler(cfg)
    backend = cfg.prelabeler.backend
    try:  # each imports torch: the gpu extra
        if backend == "foundation":
            from labelloop.prelabel.backends.foundation import FoundationPreLabeler as cls
        elif backend == "sam3":
            from labelloop.prelabel.backends.sam3 import Sam3PreLabeler as cls
        elif backend == "rtdetrv2":
            from labelloop.training.backend import RTDetrV2PreLabeler as cls
        else:
            raise ValueError(f"unknown pre-labeler backend {backend!r}")
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"prelabeler.backend {backend} needs {GPU_NEEDS[backend]} ({exc}): "
                           "pip install 'labelloop[gpu]'") from None
    return cls(cfg, root)


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
