"""Ultralytics YOLO label layouts: per-image label text (detect, segment, pose) and the dataset
``data.yaml`` (:mod:`~labelloop.formats.yolo.writer`)."""

from labelloop.formats.yolo.writer import (
                                           SPLITS,
                                           TASKS,
                                           check_label_text,
                                           data_yaml,
                                           flip_index,
                                           join_parts,
                                           label_text,
                                           object_polygon,
                                           parse_yolo_lines,
                                           yolo_lines,
)

__all__ = ["SPLITS", "TASKS", "check_label_text", "data_yaml", "flip_index", "join_parts", "label_text",
           "object_polygon", "parse_yolo_lines", "yolo_lines"]
