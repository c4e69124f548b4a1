"""Report stage: pure functions of a run's results and its comparison report."""

from ._documents import FORMATS, write_reports
from ._export import check_not_store, write_json, write_predictions_csv
from ._mlflow import export_mlflow, resolve_tracking_uri
from ._notebook import NotebookProgress, describe_run, results_html
from ._terminal import render_comparison, render_summary, render_verification

__all__ = [
    "FORMATS",
    "NotebookProgress",
    "check_not_store",
    "describe_run",
    "export_mlflow",
    "render_comparison",
    "render_summary",
    "render_verification",
    "resolve_tracking_uri",
    "results_html",
    "write_json",
    "write_predictions_csv",
    "write_reports",
]
