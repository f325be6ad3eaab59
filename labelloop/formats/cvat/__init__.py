"""CVAT for images 1.1 XML: the batch export with pre-annotations and CVAT's mask RLE
(:mod:`~labelloop.formats.cvat.writer`), and the reader of reviewed files
(:mod:`~labelloop.formats.cvat.reader`, the verbs of :mod:`labelloop.formats.records`)."""

from labelloop.formats.cvat.reader import looks_like, parse, parse_cvat
from labelloop.formats.cvat.writer import (
                                           TOOL,
                                           VERSION,
                                           CvatFormatError,
                                           build_cvat_xml,
                                           cvat_rle_to_mask,
                                           mask_to_cvat_rle,
)

__all__ = ["TOOL", "VERSION", "CvatFormatError", "build_cvat_xml", "cvat_rle_to_mask", "looks_like",
           "mask_to_cvat_rle", "parse", "parse_cvat"]
