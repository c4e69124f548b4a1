"""Any scikit-learn classifier as a trainer: on flattened pixels, extra features, or both."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from ._features import fit_extra_transform

INPUTS = ("pixels", "extra", "both")


class SklearnTrainer:
    """Fits a clone of ``estimator`` on the training part (the validation part is not needed:
    a scikit-learn estimator has no checkpoints to choose between)."""

    def __init__(self, estimator, inputs: str = "pixels"):
        if inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
        self.estimator = estimator
        self.inputs = inputs

    def fit(self, train, val, context):
        self.extra_transform_ = fit_extra_transform(train.extra, context.config.impute)
        self.estimator_ = clone(self.estimator)
        if "random_state" in self.estimator_.get_params():
            self.estimator_.set_params(random_state=context.seed % 2**32)
        self.estimator_.fit(self._features(train), train.labels)
        return self

    def predict_proba(self, data) -> np.ndarray:
        probs = self.estimator_.predict_proba(self._features(data))
        # Columns follow estimator.classes_; a class absent from training gets probability 0.
        full = np.zeros((len(data), len(data.class_names)))
        full[:, self.estimator_.classes_] = probs
        return full

    def _features(self, data):
        parts = []
        if self.inputs in ("pixels", "both"):
            parts.append(data.images.reshape(len(data), -1).astype(np.float64) / 255.0)
        if self.inputs in ("extra", "both"):
            if data.extra is None:
                raise ValueError(
                    f"inputs={self.inputs!r} needs extra features, but {data.name} has none; "
                    "pass --extra FILE.csv or --extra handcrafted"
                )
            parts.append(self.extra_transform_.transform(data.extra))
        return np.hstack(parts)
