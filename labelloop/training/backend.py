"""The pre-labeler backend of a fine-tuned detector (``prelabeler.backend: rtdetrv2``): a
promoted candidate pre-labels like any other backend, behind
:class:`labelloop.prelabel.protocol.PreLabeler`.

``prelabeler.rtdetrv2`` names the checkpoint directory (``path``, workspace-relative or absolute)
and its ``sha256`` (:func:`labelloop.models.hashing.sha256_path`); a missing directory or another
hash raises :class:`labelloop.prelabel.backends.loading.CheckpointError`, the error of the other
backends. The checkpoint's ``id2label`` must name only categories of ``labelloop.yaml`` (a model
trained on another ontology is refused, naming the unknown classes). The input size is the one
saved with it (``preprocessor_config.json``, :mod:`labelloop.training.detector`).

``model_id``: ``rtdetrv2@<12 hex of the checkpoint sha256>-<8 hex of the settings>``
(:func:`labelloop.prelabel.protocol.model_id_for`; settings: score threshold and max detections;
the directory's sha256 already covers its classes and input size), so a newly promoted model gets a new model_id and the
reprocessing path re-predicts the unreviewed images. Images go through the model in batches of
``prelabeler.batch_size`` on ``prelabeler.device``, with bfloat16 autocast only on CUDA; the
``prelabels`` asset runs in the Dagster pool ``gpu`` like the other model backends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from labelloop.prelabel.backends.loading import CheckpointError, resolve_path, verify_checkpoint
from labelloop.prelabel.protocol import Detection, model_id_for
from labelloop.training.detector import check_checkpoint_dir, pixel_values, postprocess
from labelloop.workspace.config import ProjectConfig

BACKEND = "rtdetrv2"


class RTDetrV2PreLabeler:
    """A fine-tuned RT-DETRv2 checkpoint as a pre-labeler (module docstring).

    Raises:
        CheckpointError: missing directory, another sha256, not an RT-DETRv2 checkpoint, or
            classes unknown to ``labelloop.yaml``.
    """

    def __init__(self, cfg: ProjectConfig, root: str | Path | None = None):
        spec = cfg.prelabeler.rtdetrv2
        if spec is None:
            raise CheckpointError("prelabeler.backend rtdetrv2 needs prelabeler.rtdetrv2 (path, sha256)")
        self.spec, self.root, self.category_names = spec, root, list(cfg.category_names)
        self.score_threshold = cfg.training.score_threshold
        self.max_detections = cfg.training.max_detections
        self.batch_size = cfg.prelabeler.batch_size
        self.device = cfg.prelabeler.device
        self.checkpoint_sha256 = spec.sha256
        # the directory's sha256 covers config.json (classes) and preprocessor_config.json (input size)
        self.model_id = model_id_for(BACKEND, spec.sha256, {"score_threshold": self.score_threshold,
                                                            "max_detections": self.max_detections})
        self.categories: list[str] = []
        self.image_size = 0
        self._model: Any = None

    def model(self) -> Any:
        """The loaded model on its device, loaded on first use (so ``model_id`` never touches the
        checkpoint): the directory is verified (sha256), its classes checked against
        ``labelloop.yaml``; ``cuda`` / ``auto`` fall back to the CPU when torch sees no GPU.

        Raises:
            CheckpointError: module docstring.
        """
        if self._model is None:
            import torch
            from transformers import RTDetrV2ForObjectDetection

            path = verify_checkpoint(resolve_path(self.spec.path, self.root), self.spec.sha256, "prelabeler.rtdetrv2",
                                     kind="dir")
            check_checkpoint_dir(path)
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
            categories = [id2label[i] for i in sorted(id2label)]
            unknown = sorted(set(categories) - set(self.category_names))
            if unknown:
                raise CheckpointError(f"prelabeler.rtdetrv2 {path}: classes {unknown} are not categories of "
                                      f"labelloop.yaml ({self.category_names}); train a candidate on this workspace's "
                                      "release")
            processor = path / "preprocessor_config.json"
            if not processor.is_file():
                raise CheckpointError(f"prelabeler.rtdetrv2 {path}: no preprocessor_config.json (input size)")
            self.image_size = int(json.loads(processor.read_text(encoding="utf-8"))["size"]["height"])
            self.categories = categories
            if self.device in ("auto", "cuda") or self.device.startswith("cuda:"):
                self.device = ("cuda" if self.device == "auto" else self.device) if torch.cuda.is_available() else "cpu"
            self._model = RTDetrV2ForObjectDetection.from_pretrained(path).to(self.device).eval()  # type: ignore[arg-type]
        return self._model

    def predict(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        """``images``: RGB PIL images (EXIF applied). Returns per image the detections, best first,
        ``bbox`` xyxy pixels of that image, ``score`` the class sigmoid in [0, 1]."""
        import torch

        model = self.model()
        out: list[list[Detection]] = []
        for i in range(0, len(images), self.batch_size):
            chunk = list(images[i:i + self.batch_size])
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                        enabled=self.device.startswith("cuda")):
                res = model(pixel_values=pixel_values(chunk, self.image_size).to(self.device))
            for dets in postprocess(res.logits, res.pred_boxes, [im.size for im in chunk], self.score_threshold,
                                    self.max_detections):
                out.append([Detection(category=self.categories[k], bbox=(b[0], b[1], b[2], b[3]), score=s)
                            for k, s, b in dets])
        return out
