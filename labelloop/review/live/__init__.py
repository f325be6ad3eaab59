"""A live Label Studio server through ``label-studio-sdk``: the client
(:mod:`~labelloop.review.live.server`), the push / pull round trip (:mod:`~labelloop.review.live.sync`)
and the webhook endpoint that pulls on annotation events (:mod:`~labelloop.review.live.webhook`)."""

from labelloop.review.live.server import LabelStudioServer, LabelStudioServerError
from labelloop.review.live.sync import pull_reviews, push_batch
from labelloop.review.live.webhook import WebhookServer

__all__ = ["LabelStudioServer", "LabelStudioServerError", "WebhookServer", "pull_reviews", "push_batch"]
