"""Calibration bench for the verdict's test, the seed-noise (A/A) check and the design advice.

It does not assume the model it checks: data sets of the user's size are drawn from a large
tabular population, real learners are trained with real seed noise on the splits cvkit makes
(``cvkit.splits.make_plan``), and every candidate verdict test is run on the per-job AUCs the
pipeline would compute. Measured per training regime (converged to very unstable):

- false-positive rate under A = B (the variant sees a different but exchangeable feature),
- power and CI coverage at a stated true difference (the variant also sees one informative
  feature the baseline lacks; the truth is the mean AUC difference of models trained on many
  independent training sets of the fold's size, scored on a large independent sample),
- the A/A seed-noise check: its false-positive rate, and its power against an offset of one
  seed-sd versus the power it states,
- the design advice: the power the design model projects from a small pilot for bigger designs
  versus the power those designs reach in the bench.

    python benchmarks/calibration.py --out table.md            # full run (about 40 min, 2 cores)
    python benchmarks/calibration.py --reduced --out table.md  # CI run (about a minute, 1 core)

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


def _sgd(epochs, rate):
    def make(seed):
        return SGDClassifier(
            loss="log_loss", alpha=1e-3, learning_rate="constant", eta0=rate, max_iter=epochs, tol=None,
            random_state=seed,
        )  # fmt: skip

    return make


def _mlp(epochs, rate):
    def make(seed):
        return MLPClassifier((16,), learning_rate_init=rate, max_iter=epochs, random_state=seed)

    return make


# name -> (learner factory of a seed, what the regime stands for)
REGIMES = {
    "converged": (_sgd(30, 0.02), "SGD logistic regression, 30 epochs, lr 0.02: little seed noise"),
    "underfit": (_sgd(1, 0.005), "SGD logistic regression, 1 epoch, lr 0.005: stops far from the optimum"),
    "unstable_sgd": (_sgd(1, 0.5), "SGD logistic regression, 1 epoch, lr 0.5: seed-dominated"),
    "mlp_adam": (
        _mlp(10, 0.01),
        "MLP (16 units), Adam, 10 epochs, lr 0.01: short deep-learning-like training",
    ),
    "mlp_hot": (_mlp(4, 0.1), "MLP (16 units), Adam, 4 epochs, lr 0.1: very unstable"),
}


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
    sequential_regimes: tuple[str, ...] = ("converged", "unstable_sgd")

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
    x, y = draw(rng, config.n_samples)
    plan = make_plan(y, config.n_folds, config.n_repeats, seed=index)
    rows = []
    for split in plan:
        train = np.concatenate([split.train, split.val])  # the learners need no validation part
        test = split.test
        positive = y[test] == 1
        for seed in range(config.n_seeds):
            # cvkit's own training seeds: one per (repeat, fold, seed index), shared by the models.
            seed_value = job_seed(index, split.repeat, split.fold, seed)
            base = _fit_scores(make, seed_value, BASELINE_FEATURES, x[train], y[train], x[test])
            twin = _fit_scores(make, seed_value, NULL_FEATURES, x[train], y[train], x[test])
            better = _fit_scores(make, seed_value, BETTER_FEATURES, x[train], y[train], x[test])
            null = delong(positive, base, twin)
            power = delong(positive, base, better)
            rows.append(
                (split.repeat, split.fold, seed, null.auc_a, null.auc_b, power.auc_b, null.se**2, power.se**2)
            )
    n_train = float(np.mean([len(s.train) + len(s.val) for s in plan]))
    n_test = float(np.mean([len(s.test) for s in plan]))
    return dict(jobs=np.array(rows), n_train=n_train, n_test=n_test)


def truth(config: Config, regime: str, n_train: int, part: int = 0) -> np.ndarray:
    """AUC differences (better variant - baseline) of models trained on independent training sets
    of ``n_train`` samples, scored on a large independent sample (``part`` of ``processes``); their
    mean is the true expected difference."""
    make = REGIMES[regime][0]
    rng = np.random.default_rng([config.master_seed, 99, list(REGIMES).index(regime), n_train])
    x_test, y_test = draw(rng, config.truth_test)
    rng = np.random.default_rng([config.master_seed, 98, list(REGIMES).index(regime), n_train, part])
    diffs = []
    for i in range(part, config.n_truth, config.processes):
        x, y = draw(rng, n_train)
        seed = 10_000_000 + i
        base = _fit_scores(make, seed, BASELINE_FEATURES, x, y, x_test)
        better = _fit_scores(make, seed, BETTER_FEATURES, x, y, x_test)
        diffs.append(roc_auc_score(y_test, better) - roc_auc_score(y_test, base))
    return np.asarray(diffs)


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
    runs under A = B (the twin) and with the variant shifted to exactly that effect."""
    k = config.n_folds
    null, better = [], []
    for r in runs:
        for columns, offset_to, out in ((POWER, effect, better), (NULL, None, null)):
            # Each comparison planned from its own 2-repeat pilot.
            pilot = estimate_variance_model(_jobs(r, *columns, repeats=2))
            projected = [
                design_variance(pilot, n_folds=k, n_repeats=repeats, n_seeds=1, method=DEFAULT_METHOD)
                for repeats in range(2, SEQUENTIAL_REPEATS + 1)
            ]
            variances, dfs = zip(*projected)
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
    return dict(null=null, better=better, n=len(runs))


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
        diffs = np.concatenate(chunks)
        truths[regime] = (float(diffs.mean()), float(diffs.std(ddof=1) / np.sqrt(len(diffs))))
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
)
# About 6 minutes on 2 cores (AMD EPYC); the problem regimes first.
FULL = Config(
    regimes=("unstable_sgd", "mlp_adam", "converged", "mlp_hot", "underfit"),
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
