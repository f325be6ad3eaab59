"""Label Studio 1.23: what labelloop sends (labeling config, import tasks with pre-annotations,
:mod:`~labelloop.formats.labelstudio.tasks`), brush masks (:mod:`~labelloop.formats.labelstudio.brush`),
and exports read back (JSON / JSON-MIN, :mod:`~labelloop.formats.labelstudio.reader`, one result
item at a time in :mod:`~labelloop.formats.labelstudio.regions`)."""

from labelloop.formats.labelstudio.brush import brush_rle_to_mask, mask_to_brush_rle
from labelloop.formats.labelstudio.reader import (
                                                  DEFAULT_MAX_EXPORT_BYTES,
                                                  ExportFormatError,
                                                  ExportTooLarge,
                                                  annotator_pseudonym,
                                                  check_size,
                                                  default_source,
                                                  image_ref_path,
                                                  parse_export,
                                                  read_export,
                                                  record_item,
                                                  region_bbox,
)
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
           "ExportTooLarge", "annotator_pseudonym", "brush_rle_to_mask", "build_import_tasks", "check_size",
           "default_source", "image_ref_path", "image_reference", "label_config_xml", "mask_to_brush_rle",
           "parse_export", "read_export", "record_item", "region_bbox"]
