"""The files other tools read and write, one package per tool: :mod:`~labelloop.formats.coco`,
:mod:`~labelloop.formats.cvat`, :mod:`~labelloop.formats.labelstudio`, :mod:`~labelloop.formats.yolo`.
A reader turns the tool's file into review records, the one record type of
:mod:`~labelloop.formats.records` with the same verbs in every tool; a writer turns labelloop's rows
into the tool's file; neither touches a workspace. Coordinates are converted here and nowhere else."""

__all__ = ["coco", "cvat", "labelstudio", "records", "yolo"]
