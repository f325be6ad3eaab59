"""Geometry of labels: boxes (:mod:`~labelloop.geometry.boxes`: xyxy pixels, conversions at the
edges, IoU, matching), instance masks (:mod:`~labelloop.geometry.masks`: COCO RLE, polygons) and
keypoints (:mod:`~labelloop.geometry.keypoints`: COCO triples, visibility flags)."""

from labelloop.geometry.boxes import (
                                      area,
                                      box_problem,
                                      clip,
                                      greedy_match,
                                      iou,
                                      iou_matrix,
                                      ls_to_xyxy,
                                      xywh_to_xyxy,
                                      xyxy_to_ls,
                                      xyxy_to_xywh,
                                      xyxy_to_yolo,
                                      yolo_to_xyxy,
)
from labelloop.geometry.keypoints import KeypointError
from labelloop.geometry.masks import (
                                      coco_segmentation,
                                      decode_rle,
                                      encode_rle,
                                      mask_iou,
                                      mask_to_polygons,
                                      polygons_to_rle,
                                      rle_area,
                                      rle_bbox_xyxy,
                                      segmentation_to_rle,
)

__all__ = ["KeypointError", "area", "box_problem", "clip", "coco_segmentation", "decode_rle", "encode_rle",
           "greedy_match", "iou", "iou_matrix", "ls_to_xyxy", "mask_iou", "mask_to_polygons", "polygons_to_rle",
           "rle_area", "rle_bbox_xyxy", "segmentation_to_rle", "xywh_to_xyxy", "xyxy_to_ls", "xyxy_to_xywh",
           "xyxy_to_yolo", "yolo_to_xyxy"]
