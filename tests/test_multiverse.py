"""The recipe grid (``--vary``): drop_last, parsing, shared splits, reuse and the across-recipe analysis."""

import torch

import cvkit
from cvkit.trainers import TrainConfig
from cvkit.trainers._torch import _batches


def test_drop_last_drops_an_incomplete_batch_and_a_batch_of_one():
    order = torch.arange(33)
    assert [len(b) for b in _batches(order, 16)] == [16, 16]  # the batch of 1: BatchNorm cannot train on it
    assert [len(b) for b in _batches(order, 16, drop_last=True)] == [16, 16]
    order = torch.arange(37)
    assert [len(b) for b in _batches(order, 16)] == [16, 16, 5]
    assert [len(b) for b in _batches(order, 16, drop_last=True)] == [16, 16]
    assert [len(b) for b in _batches(torch.arange(10), 16, drop_last=True)] == [10]  # never no batch at all


def test_drop_last_enters_the_recipe_only_when_true():
    assert "drop_last" not in TrainConfig().as_dict()
    assert TrainConfig(drop_last=True).as_dict()["drop_last"] is True


def test_a_drop_last_run_trains_again_and_a_default_run_resumes(tiny, tmp_path):
    fast = dict(folds=2, repeats=1, epochs=1, batch_size=16)
    first = cvkit.evaluate([], data=tiny, out=tmp_path / "run", **fast)
    again = cvkit.evaluate([], data=tiny, out=tmp_path / "run", **fast)
    assert (again.counts.trained, again.counts.resumed) == (0, first.counts.trained)
    dropped = cvkit.evaluate([], data=tiny, out=tmp_path / "dropped", drop_last=True, **fast)
    assert dropped.counts.trained == first.counts.trained and dropped.counts.reused == 0
