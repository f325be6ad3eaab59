"""labelloop: the domain library of the image-labeling loop.

No Dagster imports live here: every module is usable from a notebook or another orchestrator.
Coordinates are pixels of the EXIF-corrected image, float, ``x0, y0, x1, y1`` (xyxy), converted
only at the edges (COCO xywh, YOLO normalized cxcywh, Label Studio percent).

Packages, highest layer first; each imports only from the layers below it (the import-linter
contracts in ``pyproject.toml`` check it, counting imports inside functions):

- :mod:`labelloop.release`: cut, build, check, splits, COCO ids, shards, diff, lineage, audit
- :mod:`labelloop.qa`: metrics, intervals, agreement, gold and model evaluation, label errors,
  statistics, cost, calibration, the QA run and its HTML report
- :mod:`labelloop.review` / :mod:`labelloop.reprocess`: export to review tools, review import,
  matching, the review store, resolution, gold sets, the live Label Studio round trip / which
  per-batch assets are stale and the runs that redo them
- :mod:`labelloop.routing`: confidence routing, active learning, the review queue
- :mod:`labelloop.prelabel`: the PreLabeler protocol, the per-batch stage, the model backends
- :mod:`labelloop.ingest`: files into a batch, and the raw_images scan
- :mod:`labelloop.formats`: COCO, CVAT, Label Studio and YOLO files
- :mod:`labelloop.workspace`: layout, settings, init, git + DVC, remotes, every table's path
- :mod:`labelloop.images`: image files, colour modes, perceptual hashes, bundled photos
- :mod:`labelloop.tables`: Arrow schemas and atomic Parquet I/O
- :mod:`labelloop.geometry` / :mod:`labelloop.store`: boxes, masks, keypoints / local or S3 paths
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
