"""Stats stage: pure functions on arrays of labels, probabilities and per-fold scores.

Differences are always variant minus baseline (positive = the variant is better). Fold-level
tests (corrected t, Bayesian correlated t) compare *training procedures*; sample-level tests
(McNemar, DeLong, bootstrap over samples) compare two *trained models* and ignore seed variance.
"""

from ._checks import SeedNoiseCheck, seed_noise_check
from ._decision import (
    VERDICTS,
    Verdict,
    decide,
    default_rope,
    holm_levels,
    smallest_confirmable_rope,
    verdict_test,
    verdicts,
)
from ._design import (
    DESIGN_DATA_FACTORS,
    DesignAdvice,
    DesignProjection,
    VarianceModel,
    advise_design,
    design_power,
    detectable_effect,
    estimate_variance_model,
)
from ._metrics import (
    METRIC_LABELS,
    METRICS,
    VERDICT_METRICS,
    classification_metrics,
    metric_label,
    predict_classes,
)
from ._power import (
    DesignOption,
    DetectableEffect,
    corrected_ttest_power,
    design_needed,
    mcnemar_detectable_difference,
    minimal_detectable_effect,
)
from ._runs import (
    FriedmanResult,
    ProbOutperformResult,
    VarianceComponents,
    benjamini_hochberg,
    friedman,
    holm,
    prob_outperform,
    variance_components,
)
from ._samples import (
    BOOTSTRAP_METRICS,
    BootstrapResult,
    DeLongResult,
    McNemarResult,
    bootstrap_diff,
    bootstrap_score,
    delong,
    mcnemar,
)
from ._ttest import (
    BayesResult,
    CorrectedTTestResult,
    bayes_correlated_ttest,
    corrected_ttest,
    naive_paired_ttest,
)
from ._verdict import DEFAULT_METHOD as DEFAULT_VERDICT_METHOD
from ._verdict import METHODS as VERDICT_METHODS
from ._verdict import (
    SAMPLING_VARIANCE_METRICS,
    DifferenceTest,
    PairedJobScores,
    difference_test,
    difference_variance,
)

__all__ = [
    "DEFAULT_VERDICT_METHOD",
    "VERDICT_METHODS",
    "SAMPLING_VARIANCE_METRICS",
    "DesignAdvice",
    "DesignProjection",
    "DifferenceTest",
    "PairedJobScores",
    "SeedNoiseCheck",
    "VarianceModel",
    "DESIGN_DATA_FACTORS",
    "advise_design",
    "design_power",
    "detectable_effect",
    "difference_test",
    "difference_variance",
    "estimate_variance_model",
    "seed_noise_check",
    "BOOTSTRAP_METRICS",
    "METRIC_LABELS",
    "METRICS",
    "VERDICTS",
    "VERDICT_METRICS",
    "Verdict",
    "BayesResult",
    "BootstrapResult",
    "CorrectedTTestResult",
    "DeLongResult",
    "DesignOption",
    "DetectableEffect",
    "FriedmanResult",
    "McNemarResult",
    "ProbOutperformResult",
    "VarianceComponents",
    "bayes_correlated_ttest",
    "benjamini_hochberg",
    "bootstrap_diff",
    "bootstrap_score",
    "classification_metrics",
    "corrected_ttest",
    "corrected_ttest_power",
    "delong",
    "decide",
    "default_rope",
    "design_needed",
    "friedman",
    "holm",
    "holm_levels",
    "mcnemar",
    "metric_label",
    "mcnemar_detectable_difference",
    "minimal_detectable_effect",
    "naive_paired_ttest",
    "predict_classes",
    "prob_outperform",
    "smallest_confirmable_rope",
    "variance_components",
    "verdict_test",
    "verdicts",
]
