"""The split plan: every outer train/test split and its inner validation split, fixed once per run
and shared by every model (the paired design)."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedGroupKFold, train_test_split

from ..errors import SplitError


@dataclass(frozen=True, eq=False)
class Split:
    """One outer fold: ``train`` fits the model, ``val`` selects the checkpoint, ``test`` scores it."""

    repeat: int
    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            h.update(np.asarray(part, dtype=np.int64).tobytes() + b"|")
        return h.hexdigest()


@dataclass(frozen=True, eq=False)
class SplitPlan:
    splits: tuple[Split, ...]
    n_splits: int
    n_repeats: int
    seed: int
    val_fraction: float

    def __iter__(self):
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    @property
    def digest(self) -> str:
        """Hash of every index array: two runs with equal digests used identical splits."""
        return hashlib.sha256("".join(s.digest for s in self.splits).encode()).hexdigest()

    def to_records(self) -> list[dict]:
        return [
            dict(
                repeat=s.repeat, fold=s.fold, train=s.train.tolist(), val=s.val.tolist(), test=s.test.tolist()
            )
            for s in self.splits
        ]

    @classmethod
    def from_records(cls, records, *, n_splits, n_repeats, seed, val_fraction) -> SplitPlan:
        splits = tuple(
            Split(
                r["repeat"], r["fold"], *(np.asarray(r[k], dtype=np.int64) for k in ("train", "val", "test"))
            )
            for r in records
        )
        return cls(splits, n_splits, n_repeats, seed, val_fraction)


def make_plan(
    labels,
    n_splits: int = 5,
    n_repeats: int = 3,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    groups=None,
    cv=None,
    class_names=None,
) -> SplitPlan:
    """Repeated stratified k-fold (``StratifiedGroupKFold`` per repeat when ``groups`` are given),
    and inside each outer training part a stratified validation split of ``val_fraction``.

    The plan depends only on the labels (and groups), the fold counts and ``seed``; with the same
    seed it reproduces scikit-learn's ``RepeatedStratifiedKFold(random_state=seed)`` and the
    ``train_test_split(..., stratify=y, random_state=seed)`` that a hand-written loop would use.

    Parameters
    ----------
    labels : array of int, shape (n_samples,)
        The class of each sample.
    n_splits : int, default=5
        Outer folds of each repeat (at least 2, and at most the smallest class or group count).
    n_repeats : int, default=3
        Repeats of the k-fold split (at least 1).
    seed : int, default=0
        Seed of every repeat's shuffle and of the validation splits.
    val_fraction : float, default=0.1
        Share of each outer training part kept for validation, strictly between 0 and 1.
    groups : array or None, default=None
        A group (patient) per sample: no group is split between training and test.
    cv : scikit-learn splitter or None, default=None
        Any splitter used instead of ``n_splits``/``n_repeats`` (repeats are read from its
        ``n_repeats`` attribute when it has one).
    class_names : sequence of str or None, default=None
        Names of the classes, for the error messages; None: the label numbers.

    Returns
    -------
    SplitPlan
        The splits, each with its training, validation and test indices, and a content digest.

    Raises
    ------
    SplitError
        A design this data cannot support (too few samples or groups of a class for the folds).
    """
    y = np.asarray(labels)
    groups = None if groups is None else np.asarray(groups)
    names = class_names or [str(c) for c in range(int(y.max()) + 1)]
    if cv is None:
        _check_design(y, n_splits, n_repeats, groups, names)
        outer = list(_outer_splits(y, n_splits, n_repeats, seed, groups))
    else:
        n_total = cv.get_n_splits(np.zeros((len(y), 1)), y, groups)
        n_repeats = int(getattr(cv, "n_repeats", 1))
        n_splits = n_total // n_repeats
        outer = list(cv.split(np.zeros((len(y), 1)), y, groups))
    if not 0 < val_fraction < 1:
        raise SplitError(f"validation fraction must lie strictly between 0 and 1, got {val_fraction}")
    splits = []
    for k, (train_val, test) in enumerate(outer):
        repeat, fold = divmod(k, n_splits)
        train, val = _inner_split(np.asarray(train_val), y, groups, val_fraction, seed, names)
        splits.append(Split(repeat, fold, np.sort(train), np.sort(val), np.sort(np.asarray(test))))
    for s in splits:
        absent = [names[c] for c in np.unique(y) if not np.any(y[s.train] == c)]
        if absent:
            where = (
                "its samples lie in too few groups to spread over the folds; use fewer folds or check "
                "the group column"
                if groups is not None
                else "use fewer folds"
            )
            raise SplitError(
                f"class {absent[0]!r} is missing from the training part of repeat {s.repeat}, "
                f"fold {s.fold}: {where}"
            )
        unchecked = [names[c] for c in np.unique(y) if not np.any(y[s.val] == c)]
        if unchecked:
            few = "groups" if groups is not None else "samples"
            warnings.warn(
                f"validation part (repeat {s.repeat}, fold {s.fold}) has no sample of "
                f"{', '.join(unchecked)} (too few of its {few} to spare one): the val_auc checkpoint "
                "rule falls back to the last epoch in its jobs",
                stacklevel=2,
            )
        missing = [names[c] for c in np.unique(y) if not np.any(y[s.test] == c)]
        if missing:
            warnings.warn(
                f"test fold (repeat {s.repeat}, fold {s.fold}) has no sample of "
                f"{', '.join(missing)}: its AUC is undefined; use fewer folds",
                stacklevel=2,
            )
    return SplitPlan(tuple(splits), n_splits, n_repeats, seed, val_fraction)


def _check_design(y, n_splits, n_repeats, groups, names):
    if n_splits < 2:
        raise SplitError(f"--folds must be at least 2, got {n_splits}")
    if n_repeats < 1:
        raise SplitError(f"--repeats must be at least 1, got {n_repeats}")
    counts = np.bincount(y, minlength=len(names))
    present = counts > 0
    smallest = int(np.argmin(np.where(present, counts, np.iinfo(np.int64).max)))
    if counts[smallest] < n_splits:
        raise SplitError(
            f"class {names[smallest]!r} has only {counts[smallest]} samples, fewer than "
            f"--folds {n_splits}; use --folds {max(2, int(counts[smallest]))} or fewer"
        )
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < n_splits:
            raise SplitError(
                f"only {n_groups} groups for --folds {n_splits}: every fold needs its own "
                "groups; use fewer folds"
            )


def _outer_splits(y, n_splits, n_repeats, seed, groups):
    x = np.zeros((len(y), 1))
    if groups is None:
        yield from RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed).split(
            x, y
        )
        return
    repeat_seeds = np.random.SeedSequence(seed).generate_state(n_repeats)
    for repeat_seed in repeat_seeds:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=int(repeat_seed))
        yield from splitter.split(x, y, groups)


def _inner_split(train_val, y, groups, val_fraction, seed, names):
    y_part = y[train_val]
    if groups is None:
        counts = np.bincount(y_part)
        n_val = int(np.ceil(val_fraction * len(train_val)))
        if n_val < np.count_nonzero(counts):
            raise SplitError(
                f"validation part of {n_val} samples cannot hold every class; "
                "use a larger validation fraction or fewer folds"
            )
        if counts[counts > 0].min() < 2:
            rare = names[int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))]
            raise SplitError(
                f"class {rare!r} has fewer than 2 samples in a training fold: "
                "it cannot appear in both training and validation; use fewer folds"
            )
        train, val = train_test_split(train_val, test_size=val_fraction, stratify=y_part, random_state=seed)
        return _every_class_in_val(train, val, y, None, seed)
    n_inner = max(2, int(round(1 / val_fraction)))
    group_part = groups[train_val]
    if len(np.unique(group_part)) < n_inner:
        raise SplitError(
            f"too few groups in a training fold ({len(np.unique(group_part))}) to hold out "
            f"a validation fraction of {val_fraction}; use fewer folds"
        )
    splitter = StratifiedGroupKFold(n_splits=n_inner, shuffle=True, random_state=seed)
    inner_train, inner_val = next(splitter.split(np.zeros((len(train_val), 1)), y_part, group_part))
    return _every_class_in_val(train_val[inner_train], train_val[inner_val], y, groups, seed)


def _every_class_in_val(train, val, y, groups, seed):
    """Move samples (whole groups, with ``groups``) of a class the validation part lacks from the
    training part into it, as long as the training part keeps that class. Stratification rounds a
    rare class's share of a small validation part down to nothing (3 positives in 30, 10% held
    out: 0.3 -> 0), and a validation part without a class has no AUC to choose a checkpoint by.
    Without groups, a sample of the best represented class goes back to keep the part's size.
    Parts that already hold every class are returned unchanged (scikit-learn's split)."""
    rng = np.random.default_rng(seed)
    train, val = np.asarray(train), np.asarray(val)
    for c in np.unique(y[train]):
        if np.any(y[val] == c):
            continue
        candidates = train[y[train] == c]
        if groups is None:
            if len(candidates) < 2:
                continue
            moved = np.array([rng.choice(candidates)])
            val_counts = np.bincount(y[val], minlength=int(y.max()) + 1)
            common = int(np.argmax(val_counts))
            if val_counts[common] > 1:
                back = rng.choice(val[y[val] == common])
                val, train = val[val != back], np.append(train, back)
        else:
            # the smallest group of the class whose leaving still leaves the class in training
            sizes = {g: int(np.sum(groups[train] == g)) for g in np.unique(groups[candidates])}
            movable = [
                g
                for g in sorted(sizes, key=lambda g: (sizes[g], str(g)))
                if np.any(y[train[groups[train] != g]] == c)
            ]
            if not movable:
                continue
            moved = train[groups[train] == movable[0]]
        train = train[~np.isin(train, moved)]
        val = np.append(val, moved)
    return train, val
