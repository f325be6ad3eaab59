"""Pre-labelers: models that turn images into predictions behind one protocol
(:mod:`~labelloop.prelabel.protocol`), the per-batch ``prelabels`` stage
(:mod:`~labelloop.prelabel.stage`), and the model backends (:mod:`~labelloop.prelabel.backends`:
the embedded OpenCV default, Grounding DINO / OWLv2 + SAM, SAM-HQ, SAM 2)."""

from labelloop.prelabel.protocol import Detection, PreLabeler, iter_predictions, model_id_for
from labelloop.prelabel.stage import prediction_id, prelabel_batch

__all__ = ["Detection", "PreLabeler", "iter_predictions", "model_id_for", "prediction_id", "prelabel_batch"]
