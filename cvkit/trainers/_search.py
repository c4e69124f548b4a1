"""Nested hyper-parameter search: an inner cross-validation on the outer fold's training data
chooses the hyper-parameters, then the model is refitted with them. The outer test fold is never
seen by the choice, so the outer estimate stays unbiased (Cawley & Talbot 2010)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split


def candidates(search: dict) -> list[dict]:
    """Every combination of the search space, in a stable order."""
    names = sorted(search)
    return [dict(zip(names, values)) for values in itertools.product(*(search[n] for n in names))]


class NestedSearchTrainer:
    """Wraps a plugin's trainer factory: ``fit`` runs a stratified ``inner_folds``-fold search over
    ``search`` on train + val (inner AUC of the positive class), then fits ``factory`` with the best
    hyper-parameters on the same train/val split a plain run uses."""

    def __init__(self, factory, search: dict, inner_folds: int = 3, val_fraction: float = 0.1):
        self.factory, self.search = factory, search
        self.inner_folds, self.val_fraction = inner_folds, val_fraction

    def fit(self, train, val, context):
        pool = _concat(train, val)
        self.inner_sample_ids_ = set(pool.sample_ids.tolist())  # everything the search may look at
        splitter = StratifiedKFold(self.inner_folds, shuffle=True, random_state=context.seed % 2**32)
        self.inner_results_ = []
        for params in candidates(self.search):
            scores = []
            for inner_train, inner_test in splitter.split(np.zeros(len(pool)), pool.labels):
                fit_part, check_part = train_test_split(
                    inner_train,
                    test_size=self.val_fraction,
                    stratify=pool.labels[inner_train],
                    random_state=context.seed % 2**32,
                )
                inner_context = replace(
                    context,
                    hyperparams={**context.hyperparams, **params},
                    on_epoch=lambda record, predict: None,
                )
                trainer = self.factory(inner_context)
                trainer.fit(pool.subset(fit_part), pool.subset(check_part), inner_context)
                test = pool.subset(inner_test)
                scores.append(
                    roc_auc_score(
                        test.labels == context.positive, trainer.predict_proba(test)[:, context.positive]
                    )
                )
            self.inner_results_.append(
                dict(params=params, score=float(np.mean(scores)), fold_scores=[float(s) for s in scores])
            )
        best = max(self.inner_results_, key=lambda r: r["score"])  # first best on ties: stable
        self.choice_ = best["params"]
        chosen = replace(context, hyperparams={**context.hyperparams, **self.choice_})
        self.trainer_ = self.factory(chosen)
        self.trainer_.fit(train, val, chosen)
        return self

    def predict_proba(self, data):
        return self.trainer_.predict_proba(data)

    def __getattr__(self, name):
        # checkpoints, history and selection rule of the refitted trainer (predict_proba_by_rule, ...)
        if name.startswith("__") or "trainer_" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.trainer_, name)

    @property
    def info_(self) -> dict:
        refit = getattr(self.trainer_, "info_", None) or {}  # e.g. a checkpoint rule that fell back
        return dict(refit, choice=self.choice_, inner=self.inner_results_, inner_folds=self.inner_folds)


def _concat(a, b):
    extra = None if a.extra is None else np.concatenate([a.extra, b.extra])
    groups = None if a.groups is None else np.concatenate([a.groups, b.groups])
    return replace(
        a,
        images=np.concatenate([a.images, b.images]),
        labels=np.concatenate([a.labels, b.labels]),
        sample_ids=np.concatenate([a.sample_ids, b.sample_ids]),
        extra=extra,
        groups=groups,
    )
