"""Report stage: pure functions of a run's results."""
from ._export import write_json, write_predictions_csv
from ._terminal import render_summary

__all__ = ["render_summary", "write_json", "write_predictions_csv"]
