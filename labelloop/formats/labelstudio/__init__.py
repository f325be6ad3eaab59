"""Label Studio 1.23: what labelloop sends (labeling config, import tasks with pre-annotations,
:mod:`~labelloop.formats.labelstudio.tasks`), brush masks (:mod:`~labelloop.formats.labelstudio.brush`),
and exports read back (JSON / JSON-MIN, :mod:`~labelloop.formats.labelstudio.reader`, the verbs of
:mod:`labelloop.formats.records`; one result item at a time in :mod:`~labelloop.formats.labelstudio.regions`)."""

from labelloop.formats.labelstudio.brush import brush_rle_to_mask, mask_to_brush_rle
from labelloop.formats.labelstudio.reader import (
                                                  DEFAULT_MAX_EXPORT_BYTES,
                                                  ExportFormatError,
                                                  ExportTooLarge,
                                                  check_size,
                                                  image_ref_path,
                                                  looks_like,
                                                  parse,
                                                  parse_export,
                                                  read_export,
                                                  region_bbox,
)
from labelloop.formats.labelstudio.regions import mapped_controls
from labelloop.formats.labelstudio.tasks import (
                                                  BRUSH_CONTROL,
                                                  CONTROL_NAME,
                                                  CONTROLS,
                                                  KEYPOINT_CONTROL,
                                                  LOCAL_FILES_PREFIX,
                                                  OBJECT_NAME,
                                                  POLYGON_CONTROL,
                                                  REGION_TYPE,
                                                  TOOL,
                                                  build_import_tasks,
                                                  image_reference,
                                                  label_config_xml,
)

__all__ = ["BRUSH_CONTROL", "CONTROLS", "CONTROL_NAME", "DEFAULT_MAX_EXPORT_BYTES", "KEYPOINT_CONTROL",
           "LOCAL_FILES_PREFIX", "OBJECT_NAME", "POLYGON_CONTROL", "REGION_TYPE", "TOOL", "ExportFormatError",
           "ExportTooLarge", "brush_rle_to_mask", "build_import_tasks", "check_size", "image_ref_path",
           "image_reference", "label_config_xml", "looks_like", "mapped_controls", "mask_to_brush_rle", "parse", "parse_export",
           "read_export", "region_bbox"]
