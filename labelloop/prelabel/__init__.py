"""Pre-labelers: models that turn images into predictions behind one protocol."""

from labelloop.prelabel.protocol import Detection, PreLabeler, iter_predictions, model_id_for

__all__ = ["Detection", "PreLabeler", "iter_predictions", "model_id_for"]
