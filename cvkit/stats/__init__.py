"""Stats stage: pure functions on arrays of labels, probabilities and per-fold scores."""
from ._metrics import METRICS, classification_metrics

__all__ = ["METRICS", "classification_metrics"]
