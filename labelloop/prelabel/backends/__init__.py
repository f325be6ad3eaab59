"""Pre-labeler backends behind :class:`labelloop.prelabel.protocol.PreLabeler`.

- :mod:`~labelloop.prelabel.backends.opencv`: the embedded CPU default (OpenCV's bundled classical
  detectors, GrabCut masks);
- :mod:`~labelloop.prelabel.backends.foundation`: a text-prompted detector
  (:mod:`~labelloop.prelabel.backends.grounding_dino`, :mod:`~labelloop.prelabel.backends.owlv2`,
  :mod:`~labelloop.prelabel.backends.florence2`, sharing
  :mod:`~labelloop.prelabel.backends.detection`) then a box-prompted segmenter
  (:mod:`~labelloop.prelabel.backends.sam`, :mod:`~labelloop.prelabel.backends.sam_hf`), fed by
  :mod:`~labelloop.prelabel.backends.pipeline`, run by :mod:`~labelloop.prelabel.backends.runtime`;
- :mod:`~labelloop.prelabel.backends.sam3`: SAM 3 alone (text prompts -> boxes and masks), on the
  foundation backend's input pipeline and runtime;
- :mod:`~labelloop.prelabel.backends.loading`: sha256-checked local checkpoints.

Nothing is imported here: the model backends import torch, which the embedded default does not need.
"""

__all__ = ["compiled", "detection", "florence2", "foundation", "grounding_dino", "loading", "opencv", "owlv2",
           "pipeline", "runtime", "sam", "sam3", "sam_attention", "sam_hf"]
