"""Fine-tuning a detector on a release (issue #18): the RT-DETRv2 model and its pre/post-processing
(:mod:`~labelloop.training.detector`), a release split as training examples
(:mod:`~labelloop.training.data`), the seeded, resumable training loop with atomic per-epoch
checkpoints (:mod:`~labelloop.training.loop`), COCO AP and the paired bootstrap
(:mod:`~labelloop.training.evaluation`), the model card (:mod:`~labelloop.training.card`) and one
run on a workspace's release (:mod:`~labelloop.training.run`), the promotion gate and what promotion
changes (:mod:`~labelloop.training.promotion`) and the pre-labeler backend of a trained model
(:mod:`~labelloop.training.backend`, ``prelabeler.backend: rtdetrv2``).

The top layer of the library: it reads releases (:mod:`labelloop.release.layout`), the
``training:`` settings (:class:`labelloop.workspace.config.Training`) and writes the models table
(:mod:`labelloop.models.registry`). torch and transformers are imported inside the functions that
need them (the ``gpu`` extra).
"""

__all__ = ["backend", "card", "data", "detector", "evaluation", "loop", "promotion", "run"]
