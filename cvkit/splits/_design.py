"""``Design``: the cross-validation design of a run, one frozen object with its defaults."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OptionError


@dataclass(frozen=True)
class Design:
    """How a run cross-validates: the outer folds and repeats, the training seeds per split, the
    inner validation share and the nested hyper-parameter search.

    Parameters
    ----------
    folds : int, default=5
        Outer folds of each repeat (at least 2).
    repeats : int, default=3
        Repeats of the k-fold split, each shuffled with its own seed (at least 1).
    seeds : int, default=1
        Training seeds per split (at least 1): each job of a split is trained that many times.
    seed : int, default=0
        Master seed of the splits and of every training seed (at least 0).
    val_fraction : float, default=0.1
        Share of each outer training part kept for validation (checkpoint selection); strictly
        between 0 and 1.
    nested : bool, default=False
        Choose each plugin's ``SEARCH`` hyper-parameters by inner cross-validation inside every
        outer training part.
    inner_folds : int, default=3
        Inner folds of the nested search (at least 2 when ``nested``).
    cv : scikit-learn splitter or None, default=None
        Any object with ``split(X, y, groups)`` and ``get_n_splits``; it replaces ``folds`` and
        ``repeats``.

    Raises
    ------
    OptionError
        A value out of its range, naming the parameter (``folds must be at least 2, got 1``).
    """

    folds: int = 5
    repeats: int = 3
    seeds: int = 1
    seed: int = 0
    val_fraction: float = 0.1
    nested: bool = False
    inner_folds: int = 3
    cv: object = None

    def __post_init__(self):
        lowest = dict(seeds=1, seed=0) if self.cv is not None else dict(folds=2, repeats=1, seeds=1, seed=0)
        for option, low in lowest.items():
            value = getattr(self, option)
            if value < low:
                raise OptionError(option, f"must be at least {low}, got {value}")
        if not 0 < self.val_fraction < 1:
            raise OptionError("val_fraction", f"must lie strictly between 0 and 1, got {self.val_fraction}")
        if self.nested and self.inner_folds < 2:
            raise OptionError("inner_folds", f"must be at least 2, got {self.inner_folds}")
