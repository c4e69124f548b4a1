"""Report stage: pure functions of a run's results and its comparison report."""

from ._documents import FORMATS, write_reports
from ._export import write_json, write_predictions_csv, write_ranking_json
from ._figures import write_cd_diagram
from ._mlflow import export_mlflow, resolve_tracking_uri
from ._narrative import verdict_paragraph
from ._serialise import ranking_record, report_record
from ._terminal import render_comparison, render_ranking, render_summary, render_verification

__all__ = [
    "FORMATS",
    "export_mlflow",
    "ranking_record",
    "render_comparison",
    "render_ranking",
    "render_summary",
    "render_verification",
    "report_record",
    "verdict_paragraph",
    "write_cd_diagram",
    "resolve_tracking_uri",
    "write_json",
    "write_predictions_csv",
    "write_ranking_json",
    "write_reports",
]
