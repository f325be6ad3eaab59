"""The QA report as one self-contained HTML page (:mod:`~labelloop.qa.report.html`), its sections
(:mod:`~labelloop.qa.report.sections`) and Matplotlib figures (:mod:`~labelloop.qa.report.plots`)."""

from labelloop.qa.report.html import render_html

__all__ = ["render_html"]
