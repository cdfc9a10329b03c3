"""The run's HTML report and run comparisons: `build_report`, `compare_runs`."""

from automl.report.compare import compare_runs, compare_table
from automl.report.html import build_report

__all__ = ["build_report", "compare_runs", "compare_table"]
