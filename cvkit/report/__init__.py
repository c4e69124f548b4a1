"""Report stage: pure functions of a run's results and its comparison report."""
from ._export import write_json, write_predictions_csv
from ._terminal import render_comparison, render_summary

__all__ = ["render_comparison", "render_summary", "write_json", "write_predictions_csv"]
