"""Quality assurance of the labels: what is measured, with which interval, and the gates.

- :mod:`~labelloop.qa.metrics`: pre-label precision / recall / IoU, the audit of the QA sample,
  schema checks, the base report;
- :mod:`~labelloop.qa.intervals`: Wilson and bootstrap intervals, the three-way gate rule;
- :mod:`~labelloop.qa.agreement`, :mod:`~labelloop.qa.gold_eval`: Cohen's kappa between
  reviewers, reviewers against the gold set;
- :mod:`~labelloop.qa.model_eval`: model vs human COCO AP (pycocotools);
- :mod:`~labelloop.qa.label_errors`, :mod:`~labelloop.qa.statistics`, :mod:`~labelloop.qa.cost`:
  cleanlab suspects, label statistics and drift, labeling cost;
- :mod:`~labelloop.qa.levels`: the annotation level (tag | box | mask) recommended per class;
  :mod:`~labelloop.qa.tags`: image-level tags, pre-label precision / recall and reviewers' kappa;
- :mod:`~labelloop.qa.calibration`: per-class routing thresholds fitted on reviewed outcomes;
- :mod:`~labelloop.qa.gates`: the gates, declared once (name, blocking, threshold setting);
- :mod:`~labelloop.qa.run`: the ``qa_report`` stage; :mod:`~labelloop.qa.report`: its HTML page.
"""

from labelloop.qa.calibration import calibrate_workspace
from labelloop.qa.gates import GATES, Gate, failed_gates, gate_result
from labelloop.qa.intervals import wilson_interval
from labelloop.qa.metrics import build_qa_report, detection_metrics
from labelloop.qa.run import run_qa

__all__ = ["GATES", "Gate", "build_qa_report", "calibrate_workspace", "detection_metrics", "failed_gates", "gate_result", "run_qa",
           "wilson_interval"]
