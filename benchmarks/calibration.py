"""Calibration bench for the verdict's test, the seed-noise (A/A) check and the design advice.

It does not assume the model it checks: data sets of the user's size are drawn from a large
tabular population (or, in the ``breastmnist`` regime, with replacement from the 780 BreastMNIST
images, when the BreastMNIST file is there), real learners are trained with real
seed noise on the splits cvkit makes (``cvkit.splits.make_plan``), and every candidate verdict
test is run on the per-job AUCs the pipeline would compute. Measured per training regime
(converged to very unstable):

- false-positive rate under A = B (the variant sees a different but exchangeable feature),
- power and CI coverage at a stated true difference (the variant also sees one informative
  feature the baseline lacks; the truth is the mean AUC difference of models trained on many
  independent training sets of the fold's size, scored on a large independent sample),
- the A/A seed-noise check: its false-positive rate, and its power against an offset of one
  seed-sd versus the power it states,
- the design advice: the power the design model projects from a small pilot for bigger designs
  versus the power those designs reach in the bench,
- the sequential rule (``--until-decided``): its false-positive rate, its power at the effect it
  is planned for, the jobs it saves, and the power ``cvkit plan`` states for a difference of 0.03
  (two fixed designs and the rule) versus the power reached.

    python benchmarks/calibration.py --out table.md            # full run (about 20 min, 2 cores)
    python benchmarks/calibration.py --reduced --out table.md  # CI run (about 2 minutes, 2 cores)

Binomial margins are 1.96 sqrt(p (1 - p) / N) at the nominal rate (5% for FPR, 95% for coverage).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier

from cvkit.runner import job_seed
from cvkit.splits import make_plan
from cvkit.stats import DEFAULT_VERDICT_METHOD as DEFAULT_METHOD
from cvkit.stats import (
    VERDICT_METHODS,
    PairedJobScores,
    delong,
    design_power,
    design_variance,
    detectable_effect,
    difference_test,
    estimate_variance_model,
    look_at_jobs,
    seed_noise_check,
    sequential_design_power,
    sequential_detectable_effect,
)

ALPHA = 0.05
N_FEATURES = 10
# Features 0 and 1 are exchangeable: the baseline sees 0, the A = B variant sees 1 instead (equal
# in expectation by symmetry, yet on any one data set one of them is luckier, as with two real
# architectures), the better variant sees both. The interaction makes linear models misspecified.
COEFFICIENTS = np.array([0.7, 0.7, 1.0, -0.8, 0.6, 0.5, -0.4, 0.3, 0.0, 0.0])
INTERACTION = 0.6
INTERCEPT = -1.0  # about one positive in three (the 2:1 of BreastMNIST)
BASELINE_FEATURES = np.array([0, *range(2, N_FEATURES)])
NULL_FEATURES = np.array([1, *range(2, N_FEATURES)])
BETTER_FEATURES = np.arange(N_FEATURES)


def draw(rng, n):
    """``n`` samples of the population: features and labels (1 = positive, the minority)."""
    x = rng.normal(size=(n, N_FEATURES))
    logit = INTERCEPT + x @ COEFFICIENTS + INTERACTION * x[:, 2] * x[:, 3]
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)


class SyntheticPopulation:
    """The tabular population of ``draw``, with fixed feature sets per model."""

    draw = staticmethod(draw)

    def available(self) -> bool:
        return True

    def truth_sample(self, rng, n):
        """A large sample to score the truth on (not the whole population: ``exact`` False)."""
        return (*draw(rng, n), False)

    def features(self, rng):
        """The columns the baseline, its A = B twin and the better variant see."""
        return BASELINE_FEATURES, NULL_FEATURES, BETTER_FEATURES


BREASTMNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"  # never in the repo
BREASTMNIST_PIXELS = 28 * 28
HISTOGRAM_BINS = 16


class BreastMNISTPopulation:
    """Real images in a bootstrap world: the 780 BreastMNIST images (MedMNIST v2, CC BY 4.0) are
    the population, and a data set is ``n`` draws from them with replacement. The bench's truth
    (training sets drawn from the same 780, scored on a large draw from them) lives in that same
    world, so the test's error rates are measured against a known truth on real pixels.

    Positive: malignant (BreastMNIST label 0), named here, not taken from the label order. Per
    data set a random half of the standardised pixels goes to the baseline and the other half to
    its A = B twin (equal in expectation over the draw of halves, as two architectures are); the
    better variant sees the twin's half plus a 16-bin intensity histogram of the image: not nested
    in the baseline, as a new architecture is not.
    """

    def __init__(self, path=BREASTMNIST):
        self.path = Path(path)
        self._arrays = None

    def available(self) -> bool:
        return self.path.exists()

    def _load(self):
        if self._arrays is None:
            data = np.load(self.path)
            images = np.concatenate([data[f"{part}_images"] for part in ("train", "val", "test")])
            labels = np.concatenate([data[f"{part}_labels"] for part in ("train", "val", "test")]).ravel()
            pixels = images.reshape(len(images), -1).astype(float) / 255
            counts = np.stack(
                [np.histogram(image, bins=HISTOGRAM_BINS, range=(0, 255))[0] for image in images]
            ).astype(float)
            features = np.hstack([pixels, counts])
            features = (features - features.mean(0)) / np.where(features.std(0) > 0, features.std(0), 1.0)
            self._arrays = features, (labels == 0).astype(np.int64)  # 1 = malignant
        return self._arrays

    def truth_sample(self, rng, n):
        """The whole population (every image once: its AUC is the population's), ``exact`` True."""
        x, y = self._load()
        return x, y, True

    def draw(self, rng, n):
        """``n`` images drawn with replacement: features and labels (1 = malignant)."""
        x, y = self._load()
        rows = rng.integers(0, len(y), size=n)
        return x[rows], y[rows]

    def features(self, rng):
        pixels = rng.permutation(BREASTMNIST_PIXELS)
        half, other = np.sort(pixels[: BREASTMNIST_PIXELS // 2]), np.sort(pixels[BREASTMNIST_PIXELS // 2 :])
        histogram = BREASTMNIST_PIXELS + np.arange(HISTOGRAM_BINS)
        return half, other, np.concatenate([other, histogram])


SYNTHETIC = SyntheticPopulation()


def _sgd(epochs, rate, penalty=1e-3):
    def make(seed):
        return SGDClassifier(
            loss="log_loss", alpha=penalty, learning_rate="constant", eta0=rate, max_iter=epochs, tol=None,
            random_state=seed,
        )  # fmt: skip

    return make


def _mlp(epochs, rate):
    def make(seed):
        return MLPClassifier((16,), learning_rate_init=rate, max_iter=epochs, random_state=seed)

    return make


# name -> (learner factory of a seed, what the regime stands for[, the population: synthetic if absent])
REGIMES = {
    "converged": (_sgd(30, 0.02), "SGD logistic regression, 30 epochs, lr 0.02: little seed noise"),
    "underfit": (_sgd(1, 0.005), "SGD logistic regression, 1 epoch, lr 0.005: stops far from the optimum"),
    "unstable_sgd": (_sgd(1, 0.5), "SGD logistic regression, 1 epoch, lr 0.5: seed-dominated"),
    "mlp_adam": (
        _mlp(10, 0.01),
        "MLP (16 units), Adam, 10 epochs, lr 0.01: short deep-learning-like training",
    ),
    "mlp_hot": (_mlp(4, 0.1), "MLP (16 units), Adam, 4 epochs, lr 0.1: very unstable"),
    "breastmnist": (
        _sgd(5, 0.005, penalty=0.1),
        "BreastMNIST images (bootstrap world of the 780; positive: malignant), SGD logistic regression "
        "on pixels, 5 epochs, lr 0.005",
        BreastMNISTPopulation(),
    ),
}


def population(regime: str):
    entry = REGIMES[regime]
    return entry[2] if len(entry) > 2 else SYNTHETIC


@dataclass(frozen=True)
class Config:
    regimes: tuple[str, ...]
    n_samples: int
    n_datasets: int
    n_folds: int = 5
    n_repeats: int = 3
    n_seeds: int = 3
    n_truth: int = 200
    truth_test: int = 20000
    processes: int = 2
    master_seed: int = 2026
    n_datasets_mlp: int | None = None  # the MLP regimes are slower: fewer data sets when set
    first_index: int = 0  # data sets first_index, first_index + 1, ... (more of them for a regime)
    sequential_datasets: int = 0  # data sets per regime of the sequential section (0: none)
    sequential_regimes: tuple[str, ...] = ("converged", "unstable_sgd", "breastmnist")

    def count(self, regime: str) -> int:
        slow = regime.startswith("mlp") and self.n_datasets_mlp is not None
        return self.n_datasets_mlp if slow else self.n_datasets


def _fit_scores(make, seed, features, x_train, y_train, x_test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make(seed).fit(x_train[:, features], y_train)
    return model.predict_proba(x_test[:, features])[:, 1]


def run_dataset(config: Config, regime: str, index: int) -> dict:
    """One data set: the full CV design for the baseline, its A = B twin and the better variant;
    per job the AUCs and the DeLong test-sample variances of both differences."""
    make = REGIMES[regime][0]
    rng = np.random.default_rng([config.master_seed, list(REGIMES).index(regime), config.n_samples, index])
    x, y = population(regime).draw(rng, config.n_samples)
    baseline_features, null_features, better_features = population(regime).features(rng)
    plan = make_plan(y, config.n_folds, config.n_repeats, seed=index)
    rows = []
    for split in plan:
        train = np.concatenate([split.train, split.val])  # the learners need no validation part
        test = split.test
        positive = y[test] == 1
        for seed in range(config.n_seeds):
            # cvkit's own training seeds: one per (repeat, fold, seed index), shared by the models.
            seed_value = job_seed(index, split.repeat, split.fold, seed)
            base = _fit_scores(make, seed_value, baseline_features, x[train], y[train], x[test])
            twin = _fit_scores(make, seed_value, null_features, x[train], y[train], x[test])
            better = _fit_scores(make, seed_value, better_features, x[train], y[train], x[test])
            null = delong(positive, base, twin)
            power = delong(positive, base, better)
            rows.append(
                (split.repeat, split.fold, seed, null.auc_a, null.auc_b, power.auc_b, null.se**2, power.se**2)
            )
    n_train = float(np.mean([len(s.train) + len(s.val) for s in plan]))
    n_test = float(np.mean([len(s.test) for s in plan]))
    return dict(jobs=np.array(rows), n_train=n_train, n_test=n_test)


def truth(config: Config, regime: str, n_train: int, part: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """AUC differences (better variant - baseline) of models trained on independent training sets
    of ``n_train`` samples (``part`` of ``processes``), scored on one large sample of the
    population; their mean is the true expected difference. Also, as a 2 x n array, the summed
    DeLong placement differences of that sample over its labels (None when the sample is the whole
    population): the large sample is shared by every training set, so its own noise does not
    average out over them (``truth_value``)."""
    make, world = REGIMES[regime][0], population(regime)
    rng = np.random.default_rng([config.master_seed, 99, list(REGIMES).index(regime), n_train])
    x_test, y_test, exact = world.truth_sample(rng, config.truth_test)
    rng = np.random.default_rng([config.master_seed, 98, list(REGIMES).index(regime), n_train, part])
    diffs, placements = [], 0.0
    for i in range(part, config.n_truth, config.processes):
        x, y = world.draw(rng, n_train)
        baseline_features, _, better_features = world.features(rng)
        seed = 10_000_000 + i
        base = _fit_scores(make, seed, baseline_features, x, y, x_test)
        better = _fit_scores(make, seed, better_features, x, y, x_test)
        diffs.append(roc_auc_score(y_test, better) - roc_auc_score(y_test, base))
        placements = placements + _placements(y_test, better) - _placements(y_test, base)
    return np.asarray(diffs), None if exact else np.stack([placements, y_test])


def _placements(y, scores) -> np.ndarray:
    """DeLong's placement values: per positive the share of negatives it outranks, per negative
    the share of positives that outrank it (ties count a half); the AUC is the mean of either."""
    positives, negatives = np.sort(scores[y == 1]), np.sort(scores[y == 0])
    out = np.empty(len(y))
    pos = scores[y == 1]
    out[y == 1] = (np.searchsorted(negatives, pos, "left") + np.searchsorted(negatives, pos, "right")) / (
        2 * len(negatives)
    )
    neg = scores[y == 0]
    below = np.searchsorted(positives, neg, "left") + np.searchsorted(positives, neg, "right")
    out[y == 0] = 1 - below / (2 * len(positives))
    return out


def truth_value(chunks) -> tuple[float, float]:
    """The true difference and its Monte Carlo se: the training sets' spread and, when the scoring
    sample is not the whole population, that sample's own DeLong variance of the mean difference."""
    diffs = np.concatenate([d for d, _ in chunks])
    se2 = diffs.var(ddof=1) / len(diffs)
    if chunks[0][1] is not None:
        mean_placements = sum(p[0] for _, p in chunks) / len(diffs)
        positive = chunks[0][1][1] == 1
        se2 += mean_placements[positive].var(ddof=1) / positive.sum()
        se2 += mean_placements[~positive].var(ddof=1) / (~positive).sum()
    return float(diffs.mean()), float(np.sqrt(se2))


def _jobs(
    result, variant_column, variance_column, *, repeats=None, seeds=None, offset=0.0
) -> PairedJobScores:
    """The paired job scores of one data set (within ``repeats`` x ``seeds`` of the full run); the
    variant's scores shifted by ``offset`` (a location shift: the same noise, another true effect)."""
    rows = result["jobs"]
    keep = np.ones(len(rows), dtype=bool)
    if repeats is not None:
        keep &= rows[:, 0] < repeats
    if seeds is not None:
        keep &= rows[:, 2] < seeds
    rows = rows[keep]
    return PairedJobScores(
        rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, variant_column] + offset,
        n_train=result["n_train"], n_test=result["n_test"], diff_variance=rows[:, variance_column],
    )  # fmt: skip


NULL, POWER = (4, 6), (5, 7)  # (variant score column, difference variance column)
PILOT = (
    2,
    2,
)  # (repeats, seeds per split); 2 seeds: a pilot must have them to tell seed noise from split noise
# Designs the advice can recommend from the pilot (never fewer seeds than were run), within the full run.
ADVISED_DESIGNS = ((3, 3), (3, 2), (2, 3), (2, 2))
DESIGN_METHODS = (DEFAULT_METHOD, "corrected_t")  # the verdict's test and its fallback (one repeat)
TARGET_POWER = 0.8


def evaluate(config: Config, results: dict, truths: dict) -> dict:
    """Rejection and coverage counts per regime, for every method, the A/A check and the design."""
    summary = {}
    for regime, runs in results.items():
        if isinstance(regime, tuple):  # ("sequential", regime): below
            continue
        delta, _ = truths[regime]
        tally = {"n": len(runs)}
        for method in VERDICT_METHODS:
            for name, columns, true_value in (("null", NULL, 0.0), ("power", POWER, delta)):
                tests = [difference_test(_jobs(r, *columns), method, alpha=ALPHA) for r in runs]
                used = {t.method for t in tests}
                tally[method, name] = dict(
                    reject=np.mean([t.p < ALPHA for t in tests]),
                    cover=np.mean([t.ci_low <= true_value <= t.ci_high for t in tests]),
                    used=sorted(used),
                    # mean estimated variance / variance of the estimate over data sets: 1 when
                    # the method's se is right on average, > 1 conservative, < 1 liberal
                    se_ratio=float(
                        np.sqrt(
                            np.mean([t.se**2 for t in tests]) / np.var([t.estimate for t in tests], ddof=1)
                        )
                    ),
                )
        # The A/A check on the baseline's seeds, without and with a seed offset of one seed-sd.
        checks = [_seed_check(r) for r in runs]
        seed_sd = float(np.sqrt(np.mean([c.seed_sd**2 for c in checks])))
        shifted = [_seed_check(r, offset=seed_sd) for r in runs]
        tally["aa"] = dict(
            fpr=np.mean([c.p < ALPHA for c in checks]),
            power=np.mean([c.p < ALPHA for c in shifted]),
            stated=np.mean([c.power_one_sd for c in checks]),
            seed_sd=seed_sd,
            corrected_fpr=np.mean([_aa_corrected_t(r) < ALPHA for r in runs]),
        )
        # The design advice, checked as it is used: from each data set's small pilot, the effect
        # each design is projected to detect with 80% power; that design then runs on the same data
        # set with the variant shifted to exactly that true effect. The advice is right when about
        # 80% of those runs say "differs".
        effect = _pooled_effect(runs, truths[regime])
        design = {}
        for method in DESIGN_METHODS:
            pilots = [
                estimate_variance_model(_jobs(r, *POWER, repeats=PILOT[0], seeds=PILOT[1])) for r in runs
            ]
            for repeats, seeds in ADVISED_DESIGNS:
                stated = [
                    detectable_effect(
                        m,
                        power=TARGET_POWER,
                        alpha=ALPHA,
                        method=method,
                        n_folds=config.n_folds,
                        n_repeats=repeats,
                        n_seeds=seeds,
                    )  # fmt: skip
                    for m in pilots
                ]
                reached = []
                for r, star in zip(runs, stated):
                    jobs = _jobs(r, *POWER, repeats=repeats, seeds=seeds, offset=star - effect)
                    test = difference_test(jobs, method, alpha=ALPHA)
                    reached.append(test.p < ALPHA and test.estimate > 0)
                unshifted = [
                    difference_test(_jobs(r, *POWER, repeats=repeats, seeds=seeds), method) for r in runs
                ]
                design[method, repeats, seeds] = dict(
                    effect=float(np.mean(stated)),
                    reached=float(np.mean(reached)),
                    # the test's se against the true sd of its estimate, under the alternative:
                    # < 1 means the test is conservative there and the advice errs on the safe side
                    sd_over_se=float(
                        np.std([t.estimate for t in unshifted], ddof=1)
                        / np.sqrt(np.mean([t.se**2 for t in unshifted]))
                    ),
                )
        tally["effect"] = effect
        tally["design"] = design
        summary[regime] = tally
    for key, runs in results.items():
        if isinstance(key, tuple) and key[1] in summary:
            summary[key[1]]["sequential"] = evaluate_sequential(config, runs, summary[key[1]]["effect"])
    return summary


def _seed_check(result, offset=0.0):
    rows = result["jobs"]
    scores = rows[:, 3] + offset * (rows[:, 2] % 2 == 0)  # even-numbered seeds shifted
    return seed_noise_check(rows[:, 0], rows[:, 1], rows[:, 2], scores, alpha=ALPHA)


def _pooled_effect(runs, truth_of_regime) -> float:
    """The better variant's expected difference, as precisely as the bench knows it: the truth
    (independent training sets scored on a large sample) pooled by inverse variance with the mean
    estimate over the bench's data sets (unbiased for the same quantity: every test fold is
    independent of its training set)."""
    truth_value, truth_se = truth_of_regime
    estimates = [difference_test(_jobs(r, *POWER), DEFAULT_METHOD).estimate for r in runs]
    bench_se = float(np.std(estimates, ddof=1) / np.sqrt(len(estimates)))
    weights = np.array([1 / max(truth_se, 1e-12) ** 2, 1 / max(bench_se, 1e-12) ** 2])
    return float(weights @ [truth_value, np.mean(estimates)] / weights.sum())


def _aa_corrected_t(result) -> float:
    """The old A/A check: the even/odd halves through the overlap-corrected t (for contrast)."""
    rows = result["jobs"]
    even = rows[:, 2] % 2 == 0
    keys = rows[:, 0] * 1000 + rows[:, 1]
    splits = np.unique(keys)
    d = np.array([rows[(keys == k) & ~even, 3].mean() - rows[(keys == k) & even, 3].mean() for k in splits])
    ratio = result["n_test"] / result["n_train"]
    se = np.sqrt((1 / len(d) + ratio) * d.var(ddof=1))
    from scipy import stats

    return float(2 * stats.t.sf(abs(d.mean() / se), len(d) - 1))


# The sequential rule (cvkit evaluate --until-decided): looks after 2, 3, ..., SEQUENTIAL_REPEATS
# repeats of 5 folds, one seed per split, on data sets of their own, in the regimes listed.
SEQUENTIAL_REPEATS = 8
ROPE = 0.01
# The plan's stated power for a stated smallest effect, checked on the designs cvkit plan shows:
# fixed designs of 3 and 8 repeats (5 folds, one seed) and the sequential rule up to 8 repeats.
CHECK_EFFECT = 0.03
CHECK_DESIGNS = (3, SEQUENTIAL_REPEATS, "sequential")


def sequential_config(config: Config) -> Config:
    return Config(
        **{
            **config.__dict__,
            "n_repeats": SEQUENTIAL_REPEATS,
            "n_seeds": 1,
            "n_datasets": config.sequential_datasets,
        }
    )


def evaluate_sequential(config: Config, runs: list, effect: float) -> dict:
    """Per data set: from its 2-repeat pilot, the effect the sequential design is projected to
    detect with 80% power and the fixed design (repeats) projected to do the same; then the rule
    runs under A = B (the twin) and with the variant shifted to exactly that effect. Then, as
    ``cvkit plan --from <pilot> --min-effect CHECK_EFFECT`` does, the power the pilot projects for
    a stated effect (two fixed designs and the sequential rule), against the share of runs at that
    true effect that say "better"."""
    k = config.n_folds
    null, better = [], []
    checks = {design: ([], [], []) for design in CHECK_DESIGNS}  # (projected, oracle, reached)
    for r in runs:
        for columns, offset_to, out in ((POWER, effect, better), (NULL, None, null)):
            # Each comparison planned from its own 2-repeat pilot.
            pilot = estimate_variance_model(_jobs(r, *columns, repeats=2))
            variances, dfs = _sequential_variances(pilot, k)
            stated = sequential_detectable_effect(variances, TARGET_POWER, ALPHA, dfs=dfs)
            fixed = next(
                (
                    repeats
                    for repeats in range(2, 41)
                    if design_power(pilot, stated, n_folds=k, n_repeats=repeats, n_seeds=1) >= TARGET_POWER
                ),
                40,
            )
            offset = 0.0 if offset_to is None else stated - offset_to
            out.append((*_run_sequential(r, columns, offset, stated), fixed))
        # The stated effect: what the plan predicts from the pilot, and from the whole run (the
        # variance model measured as well as this data set allows: the pilot's noise aside).
        models = [
            estimate_variance_model(_jobs(r, *POWER, repeats=repeats)) for repeats in (2, SEQUENTIAL_REPEATS)
        ]
        offset = CHECK_EFFECT - effect
        for design, (projected, oracle, reached) in checks.items():
            if design == "sequential":
                for model, into in zip(models, (projected, oracle)):
                    variances, dfs = _sequential_variances(model, k)
                    into.append(sequential_design_power(variances, CHECK_EFFECT, ALPHA, dfs=dfs)[0])
                reached.append(_run_sequential(r, POWER, offset, CHECK_EFFECT)[0] == "better")
            else:
                for model, into in zip(models, (projected, oracle)):
                    into.append(design_power(model, CHECK_EFFECT, n_folds=k, n_repeats=design, n_seeds=1))
                test = difference_test(_jobs(r, *POWER, repeats=design, offset=offset), alpha=ALPHA)
                reached.append(test.p < ALPHA and test.estimate > 0)
    return dict(null=null, better=better, n=len(runs), checks=checks)


def _sequential_variances(model, k):
    projected = [
        design_variance(model, n_folds=k, n_repeats=repeats, n_seeds=1, method=DEFAULT_METHOD)
        for repeats in range(2, SEQUENTIAL_REPEATS + 1)
    ]
    variances, dfs = zip(*projected)
    return variances, dfs


def _run_sequential(result, columns, offset: float, min_effect: float) -> tuple[str, int]:
    """The rule's looks until it stops: (its decision, the repeats it used)."""
    looks: tuple = ()
    for repeats in range(2, SEQUENTIAL_REPEATS + 1):
        look = look_at_jobs(
            _jobs(result, *columns, repeats=repeats, offset=offset), max_repeats=SEQUENTIAL_REPEATS,
            previous=looks, alpha=ALPHA, min_effect=min_effect, rope=ROPE,
        )  # fmt: skip
        looks = (*looks, look)
        if look.decision != "continue":
            return look.decision, repeats
    return looks[-1].decision, SEQUENTIAL_REPEATS


def margin(rate: float, n: int) -> float:
    return float(1.96 * np.sqrt(rate * (1 - rate) / n))


def table(config: Config, summary: dict, truths: dict, seconds: float | None) -> str:
    counts = sorted({summary[r]["n"] for r in summary})
    timing = (
        "Evaluated from saved per-job scores." if seconds is None else f"Wall time {seconds / 60:.1f} min."
    )
    n = counts[0]
    fpr_margin, cover_margin = margin(ALPHA, n), margin(1 - ALPHA, n)
    lines = [
        "# Calibration bench",
        "",
        f"{' to '.join(map(str, sorted({counts[0], counts[-1]})))} data sets per regime (see the list) of "
        f"n = {config.n_samples} (about 2:1), {config.n_folds} folds x "
        f"{config.n_repeats} repeats x {config.n_seeds} seeds per split, AUC, alpha {ALPHA}. "
        f"Binomial margins (at {n} data sets): FPR 5% ± {100 * fpr_margin:.1f}, coverage 95% ± "
        f"{100 * cover_margin:.1f} points. Deciding method: `{DEFAULT_METHOD}`. {timing}",
        "",
        "Regimes (the truth: expected ΔAUC of the better variant, ± its Monte Carlo se):",
        "",
    ]
    for regime in summary:
        delta, se = truths[regime]
        lines.append(
            f"- `{regime}`: {REGIMES[regime][1]}; true ΔAUC {delta:+.4f} ± {se:.4f}; "
            f"{summary[regime]['n']} data sets"
        )
    lines += [
        "",
        "| quantity | what it answers | FPR (worst regime) | power (mean over regimes) "
        "| coverage (worst regime) |",
        "|---|---|---|---|---|",
    ]
    answers = {
        "corrected_t": "does the variant's expected AUC differ? (Nadeau-Bengio, df J-1)",
        "corrected_t_df_k1": "the same, df k-1",
        "seed_split": "the same, seed noise separated before the overlap correction",
        "sampling": "the same, data-set-level test-sample variance + between-repeat variance",
        "sampling_overlap": "`sampling` plus the overlap term for training-set variation",
        "sampling_within": "`sampling` with the split variation inside repeats (more degrees of freedom)",
        "sampling_training": "`sampling` plus the data-set-level share of training-set variation",
    }
    for method in VERDICT_METHODS:
        fpr = max(summary[r][method, "null"]["reject"] for r in summary)
        power = np.mean([summary[r][method, "power"]["reject"] for r in summary])
        cover = min(min(summary[r][method, w]["cover"] for w in ("null", "power")) for r in summary)
        flag = " (decides)" if method == DEFAULT_METHOD else ""
        lines.append(
            f"| verdict `{method}`{flag} | {answers[method]} | {_pct(fpr)} | {_pct(power)} | {_pct(cover)} |"
        )
    aa_fpr = max(summary[r]["aa"]["fpr"] for r in summary)
    aa_power = np.mean([summary[r]["aa"]["power"] for r in summary])
    aa_stated = np.mean([summary[r]["aa"]["stated"] for r in summary])
    old = max(summary[r]["aa"]["corrected_fpr"] for r in summary)
    lines += [
        f"| seed-noise (A/A) check | do two halves of one model's seeds differ? (plain t, no overlap "
        f"correction) | {_pct(aa_fpr)} | {_pct(aa_power)} at one seed-sd (stated {_pct(aa_stated)}) | n/a |",
        f"| old A/A check | the same through the overlap-corrected t | {_pct(old)} | | n/a |",
        "",
        "## Verdict candidates per regime: FPR under A = B / power at the true difference / coverage "
        "/ se ratio",
        "",
        "se ratio: root mean estimated se^2 over the sd of the estimate across data sets under A = B "
        "(1 = right, > 1 conservative, < 1 liberal).",
        "",
        "| method | " + " | ".join(summary) + " |",
        "|---|" + "---|" * len(summary),
    ]
    for method in VERDICT_METHODS:
        cells = []
        for regime in summary:
            null, power = summary[regime][method, "null"], summary[regime][method, "power"]
            cover = min(null["cover"], power["cover"])
            cells.append(
                f"{_pct(null['reject'])} / {_pct(power['reject'])} / {_pct(cover)} / {null['se_ratio']:.2f}"
            )
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    # The rule the verdict's method is chosen by: FPR <= 5% + binomial margin and CI coverage >= 93%
    # (95% - 2 points) in every regime; among those, the highest mean power.
    within = {
        m: all(
            summary[r][m, "null"]["reject"] <= ALPHA + margin(ALPHA, summary[r]["n"])
            and min(summary[r][m, w]["cover"] for w in ("null", "power")) >= 1 - ALPHA - 0.02
            for r in summary
        )
        for m in VERDICT_METHODS
    }
    powers = {m: np.mean([summary[r][m, "power"]["reject"] for r in summary]) for m in VERDICT_METHODS}
    calibrated = [m for m in VERDICT_METHODS if within[m]]
    best = max(calibrated, key=lambda m: powers[m]) if calibrated else None
    lines += [
        "",
        "Within nominal (FPR <= 5% + binomial margin and coverage >= 93% in every regime): "
        + ", ".join(f"`{m}` ({_pct(powers[m])} mean power)" for m in calibrated)
        + f". The most powerful of them: `{best}`. Outside: "
        + ", ".join(f"`{m}` ({_pct(powers[m])})" for m in VERDICT_METHODS if not within[m])
        + ".",
    ]
    lines += [
        "",
        "## Seed-noise (A/A) check per regime",
        "",
        "| regime | seed sd | FPR | power at one seed-sd | stated power | old check's FPR |",
        "|---|---|---|---|---|---|",
    ]
    for regime in summary:
        aa = summary[regime]["aa"]
        lines.append(
            f"| {regime} | {aa['seed_sd']:.4f} | {_pct(aa['fpr'])} | {_pct(aa['power'])} | "
            f"{_pct(aa['stated'])} | {_pct(aa['corrected_fpr'])} |"
        )
    lines += [
        "",
        f"## Design advice: stated {_pct(TARGET_POWER)} power from a {config.n_folds}x{PILOT[0]}x{PILOT[1]} "
        "pilot vs reached",
        "",
        f"For each data set, the effect a design is projected (from the data set's own "
        f"{config.n_folds}x{PILOT[0]}x{PILOT[1]} pilot) to detect with {_pct(TARGET_POWER)} power; the "
        "design then runs on that data set with the variant shifted to exactly that true effect. Cells: mean "
        "stated effect / share of runs that detect it (right within ±5 points plus the binomial margin "
        f"±{100 * margin(TARGET_POWER, n):.1f}) / the true sd of the test's estimate over its mean se "
        "(< 1: the test is conservative there, and the advice errs on the safe side).",
        "",
        "| method | regime | " + " | ".join(f"{config.n_folds}x{r}x{s}" for r, s in ADVISED_DESIGNS) + " |",
        "|---|---|" + "---|" * len(ADVISED_DESIGNS),
    ]
    for method in DESIGN_METHODS:
        for regime in summary:
            design = summary[regime]["design"]
            cells = [
                f"{design[(method, *d)]['effect']:.3f} / {_pct(design[(method, *d)]['reached'])} / "
                f"{design[(method, *d)]['sd_over_se']:.2f}"
                for d in ADVISED_DESIGNS
            ]
            lines.append(f"| `{method}` | {regime} | " + " | ".join(cells) + " |")
    lines += _sequential_table(config, summary)
    return "\n".join(lines) + "\n"


def _sequential_table(config: Config, summary: dict) -> list[str]:
    staged = [
        (regime, summary[regime]["sequential"]) for regime in summary if "sequential" in summary[regime]
    ]
    if not staged:
        return []
    k = config.n_folds
    lines = [
        "",
        f"## Sequential rule (--until-decided): looks after 2, 3, ..., {SEQUENTIAL_REPEATS} repeats of "
        f"{k} folds",
        "",
        "O'Brien-Fleming-type alpha spending on the information fraction, non-binding futility at 10% "
        "conditional power, equivalence when the repeated interval lies inside ±0.01. Per data set, the "
        "effect the sequential design is projected (from its own 2-repeat pilot) to detect with 80% power; "
        "the variant shifted to exactly that effect, and an A = B twin. Fixed: the repeats a fixed design "
        "needs for the same projected power. Jobs: trainings of the two compared models.",
        "",
        "| regime | data sets | FPR under A = B | power (stated 80%) | median jobs, A = B | "
        "median jobs, effect | fixed design's jobs (median) | saving, effect / A = B | stops under A = B |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for regime, seq in staged:
        n = seq["n"]
        fpr = np.mean([d in ("better", "worse") for d, _, _ in seq["null"]])
        power = np.mean([d == "better" for d, _, _ in seq["better"]])
        jobs_null = np.median([2 * k * r for _, r, _ in seq["null"]])
        jobs_better = np.median([2 * k * r for _, r, _ in seq["better"]])
        fixed = np.median([2 * k * f for _, _, f in seq["better"]])
        stops = {}
        for d, _, _ in seq["null"]:
            stops[d] = stops.get(d, 0) + 1
        stop_text = ", ".join(f"{d} {100 * c / n:.0f}%" for d, c in sorted(stops.items()))
        lines.append(
            f"| {regime} | {n} | {_pct(fpr)} | {_pct(power)} | {jobs_null:.0f} | {jobs_better:.0f} | "
            f"{fixed:.0f} | {_pct(1 - jobs_better / fixed)} / {_pct(1 - jobs_null / fixed)} | {stop_text} |"
        )
    lines += [
        "",
        f"### Stated power for a difference of {CHECK_EFFECT} (as `cvkit plan --from <pilot> --min-effect "
        f"{CHECK_EFFECT}` states it) against the power reached",
        "",
        "Per data set, the power its 2-repeat pilot projects for each design (the mean over data sets "
        "is what a user of `cvkit plan` is told on average); the same projection from the whole "
        f"{SEQUENTIAL_REPEATS}-repeat run (the pilot's own noise aside); and the share of runs with the "
        f'variant shifted to a true difference of exactly {CHECK_EFFECT} that say "better". Right when '
        "reached and stated agree within ±5 points (the binomial margin is given beside).",
        "",
        "| regime | design | stated by the pilot | stated by the whole run | reached | margin |",
        "|---|---|---|---|---|---|",
    ]
    for regime, seq in staged:
        for design, (projected, oracle, reached) in seq.get("checks", {}).items():
            name = (
                f"sequential, at most {SEQUENTIAL_REPEATS} repeats"
                if design == "sequential"
                else f"{k} folds x {design} repeats"
            )
            rate = float(np.mean(reached))
            lines.append(
                f"| {regime} | {name} | {_pct(np.mean(projected))} | {_pct(np.mean(oracle))} | {_pct(rate)} "
                f"| ± {100 * margin(rate, len(reached)):.1f} |"
            )
    return lines


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def run(config: Config, on_regime=None) -> tuple[dict, dict, dict]:
    """Regime by regime (``on_regime(results, truths, summary)`` after each, so that a long run
    leaves its finished regimes behind)."""
    results, truths = {}, {}
    summary = {}
    for regime in config.regimes:
        n = config.count(regime)
        outputs = Parallel(n_jobs=config.processes, batch_size=4, verbose=5 if n > 100 else 0)(
            delayed(run_dataset)(config, regime, i) for i in range(config.first_index, config.first_index + n)
        )
        results[regime] = outputs
        n_train = round(np.mean([r["n_train"] for r in outputs]))
        chunks = Parallel(n_jobs=config.processes)(
            delayed(truth)(config, regime, n_train, part) for part in range(config.processes)
        )
        truths[regime] = truth_value(chunks)
        summary = evaluate(config, results, truths)
        if on_regime is not None:
            on_regime(results, truths, summary)
    if config.sequential_datasets:
        staged = sequential_config(config)
        for regime in [r for r in config.sequential_regimes if r in config.regimes]:
            outputs = Parallel(n_jobs=config.processes, batch_size=4)(
                delayed(run_dataset)(staged, regime, i)
                for i in range(config.first_index, config.first_index + staged.n_datasets)
            )
            results["sequential", regime] = outputs
        summary = evaluate(config, results, truths)
        if on_regime is not None:
            on_regime(results, truths, summary)
    return results, truths, summary


REDUCED = Config(
    regimes=("converged", "unstable_sgd"),
    n_samples=428,
    n_datasets=80,
    n_truth=200,
    processes=2,
    sequential_datasets=40,
    sequential_regimes=("converged", "unstable_sgd"),
)
# About 6 minutes on 2 cores (AMD EPYC); the problem regimes first.
FULL = Config(
    regimes=("unstable_sgd", "mlp_adam", "converged", "mlp_hot", "underfit", "breastmnist"),
    n_samples=428,
    n_datasets=200,
    n_datasets_mlp=120,
    n_truth=300,
    sequential_datasets=200,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Markdown file for the table")
    parser.add_argument("--reduced", action="store_true", help="the quick CI version")
    parser.add_argument("--datasets", type=int, help="data sets per regime (overrides the mode's)")
    parser.add_argument("--regimes", nargs="+", choices=list(REGIMES))
    parser.add_argument("--processes", type=int, help="at most 2")
    parser.add_argument("--samples", type=int, help="data set size (default 428)")
    parser.add_argument("--first-index", type=int, default=0, help="index of the first data set drawn")
    parser.add_argument(
        "--sequential", type=int, help="data sets per regime of the sequential section (0: none)"
    )
    parser.add_argument("--raw", help="pickle of the per-job scores, written after each regime")
    parser.add_argument("--from-raw", help="re-evaluate a --raw pickle instead of training")
    parser.add_argument(
        "--recipes", type=int, default=0, help="also run the across-recipe check on N data sets (appended)"
    )
    args = parser.parse_args(argv)
    config = REDUCED if args.reduced else FULL
    overrides = {}
    if args.datasets:
        overrides["n_datasets"] = args.datasets
    if args.regimes:
        overrides["regimes"] = tuple(args.regimes)
    if args.first_index:
        overrides["first_index"] = args.first_index
    if args.samples:
        overrides["n_samples"] = args.samples
    if args.sequential is not None:
        overrides["sequential_datasets"] = args.sequential
    if args.processes:
        overrides["processes"] = min(2, args.processes)
    if overrides:
        config = Config(**{**config.__dict__, **overrides})
    missing = [r for r in config.regimes if not population(r).available()]
    if missing and not args.from_raw:
        print(f"skipping {', '.join(missing)}: {BREASTMNIST} is absent", file=sys.stderr)
        kept = tuple(r for r in config.regimes if r not in missing)
        config = Config(**{**config.__dict__, "regimes": kept})
    started = time.perf_counter()

    def write(results, truths, summary):
        seconds = None if args.from_raw else time.perf_counter() - started
        _atomic_write(args.out, table(config, summary, truths, seconds).encode())
        if args.raw:
            _atomic_write(args.raw, pickle.dumps(dict(config=config, results=results, truths=truths)))
        print(
            f"{len(summary)} regime(s) done after {(time.perf_counter() - started) / 60:.1f} min", flush=True
        )

    if args.from_raw:
        with open(args.from_raw, "rb") as f:
            raw = pickle.load(f)
        config, results, truths = raw["config"], raw["results"], raw["truths"]
        summary = evaluate(config, results, truths)
        write(results, truths, summary)
        return summary
    _, _, summary = run(config, on_regime=write)
    if args.recipes:  # --vary's analysis with real learners: benchmarks/calibration_recipes.py
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        __import__("calibration_recipes").append_section(args.out, args.recipes, n_samples=config.n_samples)
    return summary


def _atomic_write(path, data: bytes):
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("wb", dir=directory, delete=False, suffix=".tmp") as f:
        f.write(data)
    os.replace(f.name, path)


if __name__ == "__main__":
    sys.exit(main() and 0)
