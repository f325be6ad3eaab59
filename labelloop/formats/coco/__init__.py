"""COCO JSON (https://cocodataset.org/#format-data): the release writer
(:mod:`~labelloop.formats.coco.writer`) and the reader of reviewed COCO files
(:mod:`~labelloop.formats.coco.reader`, the verbs of :mod:`labelloop.formats.records`)."""

from labelloop.formats.coco.reader import (
                                           TOOL,
                                           CocoFormatError,
                                           looks_like,
                                           parse,
                                           parse_coco_review,
                                           read_coco_annotations,
)
from labelloop.formats.coco.writer import (
                                           INFO,
                                           build_coco,
                                           dumps_coco,
                                           instances_view,
                                           keypoints_view,
                                           segmentation_view,
                                           uncompressed_rle,
)

__all__ = ["INFO", "TOOL", "CocoFormatError", "build_coco", "dumps_coco", "instances_view", "keypoints_view",
           "looks_like", "parse", "parse_coco_review", "read_coco_annotations", "segmentation_view",
           "uncompressed_rle"]
