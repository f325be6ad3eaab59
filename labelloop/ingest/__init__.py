"""Ingest: image files into a workspace batch (:mod:`~labelloop.ingest.files`, ``labelloop
ingest``), then the ``raw_images`` stage that checks, identifies and de-duplicates them
(:mod:`~labelloop.ingest.scan`)."""

from labelloop.ingest.files import IngestResult, ingest, list_image_files, list_not_images
from labelloop.ingest.scan import scan_batch

__all__ = ["IngestResult", "ingest", "list_image_files", "list_not_images", "scan_batch"]
