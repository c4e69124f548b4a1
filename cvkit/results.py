"""A run's results, read back from its store: predictions, per-fold metrics and paired differences."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ._json import nan_to_none
from .data import read_thumbnails
from .errors import ConfigError, StoreError
from .runner import Store
from .stats import METRICS, classification_metrics


class ResultFrames(NamedTuple):
    metrics: pd.DataFrame
    predictions: pd.DataFrame


def load(run_dir) -> Results:
    """Open a finished (or partly finished) run folder, as ``cvkit evaluate`` or
    :func:`cvkit.evaluate` wrote it, without training anything.

    Parameters
    ----------
    run_dir : str or path
        The run folder (it holds ``cvkit.sqlite``).

    Returns
    -------
    Results
        The run's tables.

    Raises
    ------
    StoreError
        No run store in ``run_dir``, or one this cvkit cannot read.
    """
    return Results(run_dir)


class Results:
    """Everything a run has finished, as tidy tables. Reports are pure functions of this object.

    Parameters
    ----------
    run_dir : str or path
        The run folder (it holds ``cvkit.sqlite``).
    positive : str or None, default=None
        Analyse for this class instead of the run's own positive class (two-class runs only).

    Raises
    ------
    StoreError
        No run store in ``run_dir``, or one this cvkit cannot read.
    ConfigError
        A ``positive`` that is no class of the run, or another class than the run's own in a run
        of more than two classes (it chose the checkpoints).
    """

    def __init__(self, run_dir, *, positive: str | None = None):
        self.run_dir = Path(run_dir)
        with Store(self.run_dir) as store:
            store.check_finished()
            self.run = store.get_meta("run")
            self.plan = store.get_meta("plan")
            self.recipe = store.get_meta("recipe")  # the evaluate call's settings (None: a Python Dataset)
            self.registration = store.get_meta("registration")  # the pre-registered analysis plan, if any
            self.sequential = store.get_meta("sequential")  # a sequential run's looks (--until-decided)
            self.models = store.models()
            self.jobs = store.jobs()
            samples = store.samples()
            rows = store.predictions()
            self.rules = store.rules()
            self.caveats = store.get_meta("caveats", [])  # the warnings shown while the run was made
            self.history = pd.DataFrame(store.history())
        if self.run is None:
            raise StoreError(
                f"{self.run_dir}: the run was never described (evaluate stopped before its first job); "
                "run the same cvkit evaluate command again"
            )
        data = self.run["data"]
        self.class_names = tuple(data["class_names"])
        self.positive = data["positive"]
        # The positive class the run was made for; ``positive`` may re-analyse it for the other one.
        self.made_for = self.class_names[self.positive]
        if positive is not None:
            self._analyse_for(positive)
        self.sample_ids = np.array([s[1] for s in samples])
        self.labels = np.array([s[2] for s in samples], dtype=np.int64)
        self.is_holdout = np.array([bool(s[4]) for s in samples], dtype=bool)
        self._rows = rows
        self.counts = None  # set by evaluate: how many jobs were trained, resumed, reused
        self._rule_frames: dict[str, pd.DataFrame] = {}
        self._rule_metrics: dict[str, pd.DataFrame] = {}

    def _analyse_for(self, positive: str) -> None:
        if positive not in self.class_names:
            raise ConfigError(
                f"--positive {positive!r} is not a class of the run in {self.run_dir}; choose one of: "
                f"{', '.join(self.class_names)}"
            )
        index = self.class_names.index(positive)
        if index != self.positive and len(self.class_names) > 2:
            raise ConfigError(
                f"--positive {positive}: with more than two classes the positive class "
                f"({self.positive_name}) chose this run's checkpoints; evaluate again with "
                f"--positive {positive} and another --out"
            )
        self.positive = index
        self.run["data"]["positive"] = index  # every output shows the class analysed

    def __repr__(self) -> str:
        from .report import describe_run

        return f"<cvkit.Results: {describe_run(self)}>"

    def _repr_html_(self) -> str:
        """Jupyter's display: the verdict and metric tables (see :func:`cvkit.report.results_html`)."""
        from .report import results_html

        return results_html(self)

    @property
    def baseline(self) -> str:
        return next(m["name"] for m in self.models if m["role"] == "baseline")

    @property
    def variants(self) -> list[str]:
        return [m["name"] for m in self.models if m["role"] == "variant"]

    @property
    def model_names(self) -> list[str]:
        return [self.baseline, *self.variants]

    @property
    def fold_sizes(self) -> tuple[float, float]:
        """Mean (training, test) size of an outer fold; training includes the inner validation part."""
        n_train = np.mean([len(s["train"]) + len(s["val"]) for s in self.plan])
        n_test = np.mean([len(s["test"]) for s in self.plan])
        return float(n_train), float(n_test)

    @property
    def positive_name(self) -> str:
        return self.class_names[self.positive]

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """One row per (model, repeat, fold, seed, sample): the true label and each class's
        probability under the job's selected checkpoint."""
        return self._frame(self._rows)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """One row per finished job: its test-fold metrics for the positive class."""
        return self._metrics(self.predictions)

    @cached_property
    def thumbnails(self) -> dict[str, np.ndarray] | None:
        """Each sample's small image by sample id, as ``evaluate`` kept it in the run folder for the
        reports' case gallery; None for a run made before cvkit kept them, or data without pictures."""
        return read_thumbnails(self.run_dir)

    def rule_predictions(self, rule: str) -> pd.DataFrame:
        """Predictions under another checkpoint: a selection rule (``val_loss``, ``val_auc``,
        ``val_acc``, ``last``), one epoch (``epoch:3``) or the hold-out set (``holdout``).
        Read from the store once per rule; treat the frame as read-only."""
        if rule not in self._rule_frames:
            with Store(self.run_dir) as store:
                self._rule_frames[rule] = self._frame(store.predictions(rule=rule))
        return self._rule_frames[rule]

    def rule_metrics(self, rule: str) -> pd.DataFrame:
        """Per-job metrics under ``rule`` (see :meth:`rule_predictions`), computed once per rule."""
        if rule not in self._rule_metrics:
            self._rule_metrics[rule] = self._metrics(self.rule_predictions(rule))
        return self._rule_metrics[rule]

    def _frame(self, rows) -> pd.DataFrame:
        columns = ["model", "repeat", "fold", "seed_index", "seed", "rule", "sample_idx"]
        frame = pd.DataFrame([r[:7] for r in rows], columns=columns)
        probs = np.array([r[7] for r in rows]).reshape(len(rows), len(self.class_names))
        frame.insert(7, "sample_id", self.sample_ids[frame["sample_idx"]] if len(frame) else [])
        # The vocabulary of the exported CSV and of data manifests: ``label`` is the class name.
        frame.insert(8, "label_index", self.labels[frame["sample_idx"]] if len(frame) else [])
        frame.insert(9, "label", [self.class_names[i] for i in frame["label_index"]])
        for j, name in enumerate(self.class_names):
            frame[f"prob_{name}"] = probs[:, j]
        return frame

    def _metrics(self, predictions) -> pd.DataFrame:
        records = []
        prob_columns = [f"prob_{c}" for c in self.class_names]
        keys = ["model", "repeat", "fold", "seed_index", "seed"]
        for key, part in predictions.groupby(keys, sort=False):
            scores = classification_metrics(
                part["label_index"].to_numpy(), part[prob_columns].to_numpy(), self.positive
            )
            records.append({**dict(zip(keys, key)), "n_test": len(part), **scores})
        return pd.DataFrame(records, columns=[*keys, "n_test", *METRICS])

    def summary(self) -> pd.DataFrame:
        """Per model: mean and standard deviation over jobs of every metric."""
        grouped = self.metrics.groupby("model", sort=False)[list(METRICS)]
        table = grouped.agg(["mean", "std"])
        table.columns = [f"{m}_{s}" for m, s in table.columns]
        table.insert(0, "n_jobs", grouped.size())
        return table.reindex([m for m in self.model_names if m in table.index])

    def paired_differences(self, variant: str, metric: str = "auc") -> pd.DataFrame:
        """Per (repeat, fold): the baseline's and the variant's score (averaged over seeds) and
        their difference, variant minus baseline. Rows exist only where both finished."""
        per_fold = self.metrics.groupby(["model", "repeat", "fold"])[metric].mean().unstack("model")
        if self.baseline not in per_fold or variant not in per_fold:
            return pd.DataFrame(columns=["repeat", "fold", "baseline", "variant", "difference"])
        pair = per_fold[[self.baseline, variant]].dropna()
        return pd.DataFrame(
            {
                "repeat": pair.index.get_level_values(0),
                "fold": pair.index.get_level_values(1),
                "baseline": pair[self.baseline].to_numpy(),
                "variant": pair[variant].to_numpy(),
                "difference": (pair[variant] - pair[self.baseline]).to_numpy(),
            }
        )

    def training_seconds(self) -> float:
        """Training time of the finished jobs (as recorded when each was first trained)."""
        return float(sum(j["duration_s"] or 0.0 for j in self.jobs if j["status"] == "done"))

    def class_weights(self) -> dict[str, float] | None:
        """Loss weight of each class, averaged over the training folds (None when unweighted)."""
        import json

        weights = [
            json.loads(j["class_weight"])
            for j in self.jobs
            if j["status"] == "done" and j["class_weight"] not in (None, "null")
        ]
        if not weights:
            return None
        mean = np.mean(weights, axis=0)
        return {name: float(w) for name, w in zip(self.class_names, mean)}

    def to_pandas(self) -> ResultFrames:
        """``(metrics, predictions)``: per-job metrics and per-sample out-of-fold predictions."""
        return ResultFrames(self.metrics.copy(), self.predictions.copy())

    def to_json(self) -> dict:
        """A machine-readable summary: the run, and per model its per-fold metrics and summary."""
        models = {}
        for name in self.model_names:
            rows = self.metrics[self.metrics["model"] == name]
            models[name] = dict(
                role="baseline" if name == self.baseline else "variant",
                folds=_records(rows.drop(columns="model")),
                mean={m: nan_to_none(rows[m].mean()) for m in METRICS},
                std={m: nan_to_none(rows[m].std()) for m in METRICS},
            )
        differences = {
            v: {m: _records(self.paired_differences(v, m)) for m in METRICS} for v in self.variants
        }
        return dict(
            run_dir=str(self.run_dir),
            run=self.run,
            caveats=list(self.caveats),
            models=models,
            paired_differences=differences,
        )


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            k: (nan_to_none(v) if isinstance(v, float) else int(v) if isinstance(v, (np.integer,)) else v)
            for k, v in row.items()
        }
        for row in frame.to_dict(orient="records")
    ]
