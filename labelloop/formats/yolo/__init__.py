"""Ultralytics YOLO label layouts: per-image label text (detect, segment, pose) and the dataset
``data.yaml`` (:mod:`~labelloop.formats.yolo.writer`), and the reader of YOLO dataset zips
(Ultralytics' layout, Label Studio's YOLO export) as review files
(:mod:`~labelloop.formats.yolo.reader`, the verbs of :mod:`labelloop.formats.records`)."""

from labelloop.formats.yolo.reader import (
                                           ANNOTATOR,
                                           TOOL,
                                           YoloArchive,
                                           YoloFormatError,
                                           dataset_root,
                                           looks_like,
                                           norm_to_px,
                                           parse,
                                           read_archive,
)

from labelloop.formats.yolo.writer import (
                                           SPLITS,
                                           TASKS,
                                           box_fields,
                                           check_label_text,
                                           data_yaml,
                                           flip_index,
                                           join_parts,
                                           label_text,
                                           object_polygon,
                                           parse_yolo_lines,
                                           yolo_lines,
                                           yolo_view_excludes,
)

__all__ = ["ANNOTATOR", "SPLITS", "TASKS", "TOOL", "YoloArchive", "YoloFormatError", "dataset_root", "looks_like",
           "norm_to_px", "parse", "read_archive", "box_fields", "check_label_text", "data_yaml", "flip_index", "join_parts",
           "label_text", "object_polygon", "parse_yolo_lines", "yolo_lines", "yolo_view_excludes"]
