"""Extra features alone: a scikit-learn logistic regression on the (imputed, scaled) extra features.
How much do the clinical or radiomic features carry without any image?
"""

from sklearn.linear_model import LogisticRegression

ESTIMATOR_INPUTS = "extra"
HYPERPARAMS = {"C": 1.0}


def build_estimator(context):
    return LogisticRegression(C=context.hyperparams["C"], max_iter=5000)
