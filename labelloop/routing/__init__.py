"""Which images a human reviews, and in which order: confidence routing with a seeded QA sample
(:mod:`~labelloop.routing.confidence`), active-learning priority, budget and double review
(:mod:`~labelloop.routing.active_learning`), and the per-batch ``review_queue`` stage
(:mod:`~labelloop.routing.queue`)."""

from labelloop.routing.active_learning import al_policy_id, assign_reviewers, prioritize, to_send
from labelloop.routing.confidence import AUTO, QA_SAMPLE, REVIEW, kept_predictions, route_images
from labelloop.routing.queue import route_batch

__all__ = ["AUTO", "QA_SAMPLE", "REVIEW", "al_policy_id", "assign_reviewers", "kept_predictions", "prioritize",
           "route_batch", "route_images", "to_send"]
