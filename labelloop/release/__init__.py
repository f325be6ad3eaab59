"""Releases: versioned COCO + YOLO datasets, their checks and their lineage.

- :mod:`~labelloop.release.cut`: the ``dataset_release`` stage (QA gates, then plan, build,
  validate, commit + tag, push);
- :mod:`~labelloop.release.build`, :mod:`~labelloop.release.check`: the files, written
  deterministically and read back before they are accepted;
- :mod:`~labelloop.release.splits`, :mod:`~labelloop.release.ids`, :mod:`~labelloop.release.shards`:
  leakage-safe splits, stable COCO ids, tar shards;
- :mod:`~labelloop.release.diff`, :mod:`~labelloop.release.lineage`,
  :mod:`~labelloop.release.summary`, :mod:`~labelloop.release.audit`: what changed, where every
  label came from, the audit summary, workspace status.
"""

from labelloop.release.check import ReleaseInvalid
from labelloop.release.cut import ReleaseBlocked, cut_release
from labelloop.release.diff import diff_releases

__all__ = ["ReleaseBlocked", "ReleaseInvalid", "cut_release", "diff_releases"]
