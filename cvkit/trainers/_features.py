"""Extra (tabular) features: imputation and scaling fitted on the training part of a fold only."""

from __future__ import annotations

import numpy as np

IMPUTATIONS = ("none", "mean", "median")


def fit_extra_transform(train_extra, impute: str = "none"):
    """A fitted scikit-learn pipeline (imputer, then standard scaler) for the extra features, or
    None when there are none. Fitting sees the training part only, so a test fold's values never
    shape the transform applied to it."""
    if train_extra is None:
        return None
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [] if impute == "none" else [SimpleImputer(strategy=impute, keep_empty_features=True)]
    return make_pipeline(*steps, StandardScaler()).fit(np.asarray(train_extra, dtype=np.float64))
