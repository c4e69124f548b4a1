"""Report stage: pure functions of a run's results and its comparison report."""

from ..verdict_text import verdict_paragraph
from ._documents import FORMATS, check_formats, write_reports
from ._export import check_not_store, write_json, write_plan_json, write_predictions_csv, write_ranking_json
from ._figures import draw_figures, write_cd_diagram
from ._mlflow import export_mlflow, resolve_tracking_uri
from ._multiverse import forest_figure, render_grid, write_grid_predictions, write_grid_reports
from ._narrative import GLOSSARY
from ._notebook import NotebookProgress, describe_run, results_html
from ._serialise import plan_record, ranking_record, registration_record, report_record
from ._terminal import render_comparison, render_plan, render_ranking, render_summary, render_verification

__all__ = [
    "FORMATS",
    "GLOSSARY",
    "NotebookProgress",
    "check_formats",
    "check_not_store",
    "describe_run",
    "draw_figures",
    "export_mlflow",
    "forest_figure",
    "plan_record",
    "ranking_record",
    "registration_record",
    "render_comparison",
    "render_grid",
    "render_plan",
    "render_ranking",
    "render_summary",
    "render_verification",
    "report_record",
    "verdict_paragraph",
    "write_cd_diagram",
    "write_grid_predictions",
    "write_grid_reports",
    "resolve_tracking_uri",
    "results_html",
    "write_json",
    "write_plan_json",
    "write_predictions_csv",
    "write_ranking_json",
    "write_reports",
]
