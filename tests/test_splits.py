import numpy as np
import pytest
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, train_test_split

from cvkit.errors import SplitError
from cvkit.splits import make_plan


@pytest.fixture
def labels():
    return np.array([0] * 70 + [1] * 30)


def test_each_sample_is_tested_exactly_once_per_repeat(labels):
    plan = make_plan(labels, 5, 3, seed=4)
    assert len(plan) == 15
    for repeat in range(3):
        tested = np.concatenate([s.test for s in plan if s.repeat == repeat])
        assert np.array_equal(np.sort(tested), np.arange(len(labels)))


def test_parts_are_disjoint_and_cover_the_data(labels):
    for s in make_plan(labels, 5, 2, seed=0):
        parts = [set(s.train), set(s.val), set(s.test)]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert len(s.train) + len(s.val) + len(s.test) == len(labels)


def test_outer_and_inner_splits_are_stratified(labels):
    for s in make_plan(labels, 5, 3, seed=1):
        assert np.bincount(labels[s.test]).tolist() == [14, 6]
        val_counts = np.bincount(labels[s.val], minlength=2)
        assert abs(val_counts[1] / len(s.val) - 0.3) < 0.1 and val_counts.min() > 0


def test_same_seed_same_plan_other_seed_other_plan(labels):
    assert make_plan(labels, 5, 2, seed=3).digest == make_plan(labels, 5, 2, seed=3).digest
    assert make_plan(labels, 5, 2, seed=3).digest != make_plan(labels, 5, 2, seed=4).digest


def test_plan_reproduces_the_hand_written_scikit_learn_loop(labels):
    """Same outer folds and inner validation as RepeatedStratifiedKFold + train_test_split."""
    plan = make_plan(labels, 5, 2, seed=7)
    reference = RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=7).split(
        labels[:, None], labels
    )
    for s, (train_val, test) in zip(plan, reference):
        train, val = train_test_split(train_val, test_size=0.1, stratify=labels[train_val], random_state=7)
        assert np.array_equal(s.test, np.sort(test))
        assert np.array_equal(s.val, np.sort(val)) and np.array_equal(s.train, np.sort(train))


def test_groups_are_never_split(labels):
    groups = np.repeat(np.arange(50), 2)  # two images per patient
    rng = np.random.default_rng(0)
    y = np.repeat(rng.permutation([0] * 35 + [1] * 15), 2)
    plan = make_plan(y, 5, 2, seed=0, groups=groups)
    for s in plan:
        g = [set(groups[p]) for p in (s.train, s.val, s.test)]
        assert not (g[0] & g[1]) and not (g[0] & g[2]) and not (g[1] & g[2])
    for repeat in range(2):
        tested = np.concatenate([s.test for s in plan if s.repeat == repeat])
        assert np.array_equal(np.sort(tested), np.arange(len(y)))


def test_round_trip_through_records(labels):
    plan = make_plan(labels, 4, 2, seed=2)
    again = type(plan).from_records(plan.to_records(), n_splits=4, n_repeats=2, seed=2, val_fraction=0.1)
    assert again.digest == plan.digest


def test_any_scikit_learn_splitter_is_accepted(labels):
    plan = make_plan(labels, cv=StratifiedKFold(n_splits=4, shuffle=True, random_state=0))
    assert (plan.n_splits, plan.n_repeats, len(plan)) == (4, 1, 4)
    plan = make_plan(labels, cv=RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=0))
    assert [(s.repeat, s.fold) for s in plan][-1] == (1, 2)


@pytest.mark.parametrize(
    "folds, repeats, message",
    [
        (1, 3, "--folds must be at least 2, got 1"),
        (5, 0, "--repeats must be at least 1, got 0"),
        (40, 1, "class '1' has only 30 samples, fewer than --folds 40; use --folds 30 or fewer"),
    ],
)
def test_impossible_designs_are_clear_errors(labels, folds, repeats, message):
    with pytest.raises(SplitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_plan(labels, folds, repeats)


def test_too_few_groups_for_the_folds():
    with pytest.raises(SplitError, match="only 3 groups for --folds 5"):
        make_plan(np.array([0, 1] * 15), 5, 1, groups=np.repeat([0, 1, 2], 10))
