"""labelloop: the domain library of the image-labeling loop.

No Dagster imports live here: every module is usable from a notebook or another orchestrator.
Coordinates are pixels of the EXIF-corrected image, float, ``x0, y0, x1, y1`` (xyxy), converted
only at the edges (COCO xywh, YOLO normalized cxcywh, Label Studio percent).
"""

__version__ = "0.1.0"
