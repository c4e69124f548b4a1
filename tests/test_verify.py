"""`cvkit verify`: stored jobs trained again give the stored predictions bit for bit; when they do
not, it says whether the job is nondeterministic or the environment (or the store) changed."""

import json
import sqlite3

import pytest

from cvkit.cli import main

TINY_CNN = """
import os

import torch
from torch import nn

UNSEEDED = {unseeded}


def build_model(context):
    if UNSEEDED:  # a plugin that draws its own seed: every training differs
        torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    return nn.Sequential(nn.Conv2d(context.in_channels, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, context.n_classes))
"""


@pytest.fixture
def run(tiny_npz, tmp_path):
    def make(unseeded=False):
        plugin = tmp_path / "tiny_cnn.py"
        plugin.write_text(TINY_CNN.format(unseeded=unseeded))
        out = tmp_path / "run"
        assert (
            main(
                [
                    "evaluate",
                    str(plugin),
                    "--baseline",
                    "logreg",
                    "--data",
                    str(tiny_npz),
                    "--folds",
                    "3",
                    "--repeats",
                    "1",
                    "--epochs",
                    "2",
                    "--jobs",
                    "1",
                    "--report",
                    "none",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        return out, plugin

    return make


def _edit(run_dir, sql, *params):
    with sqlite3.connect(run_dir / "cvkit.sqlite") as db:
        db.execute(sql, params)


def test_a_deterministic_run_verifies_bit_for_bit(run, capsys):
    out, _ = run()
    capsys.readouterr()
    assert main(["verify", str(out), "--jobs", "6"]) == 0
    text = capsys.readouterr().out
    assert text.count("identical") == 6 and "6 of 6 finished jobs trained again" in text
    assert "compared bit for bit" in text


def test_an_unseeded_plugin_is_caught_as_nondeterministic(run, capsys):
    out, _ = run(unseeded=True)
    capsys.readouterr()
    assert main(["verify", str(out), "--jobs", "6"]) == 1
    text = capsys.readouterr().out
    assert text.count("identical") == 3  # the logistic-regression baseline
    assert text.count("two trainings here differ from each other: the job is not deterministic") == 3


@pytest.mark.parametrize(
    "torch_version, suspect",
    [
        (None, "with the same recorded software: suspect another CPU"),
        ("0.1.0", "the environment differs from the one that trained it: torch 0.1.0 -> "),
    ],
)
def test_a_changed_prediction_points_at_the_environment_or_the_store(run, capsys, torch_version, suspect):
    out, _ = run()
    with sqlite3.connect(out / "cvkit.sqlite") as db:
        key, environment = db.execute(
            "SELECT key, environment FROM jobs WHERE model = 'tiny_cnn' AND fold = 1"
        ).fetchone()
        rule, sample, probs = db.execute(
            "SELECT rule, sample_idx, probs FROM predictions WHERE job_key = ? AND rule = 'val_auc' LIMIT 1",
            (key,),
        ).fetchone()
    probs = json.loads(probs)
    probs[0] += 1e-12
    _edit(
        out,
        "UPDATE predictions SET probs = ? WHERE job_key = ? AND rule = ? AND sample_idx = ?",
        json.dumps(probs),
        key,
        rule,
        sample,
    )
    if torch_version:
        _edit(
            out,
            "UPDATE jobs SET environment = ? WHERE key = ?",
            json.dumps(json.loads(environment) | {"torch": torch_version}),
            key,
        )
    capsys.readouterr()
    assert main(["verify", str(out), "--jobs", "6"]) == 1
    text = capsys.readouterr().out
    assert text.count("identical") == 5
    assert (
        "1 differ, largest by 1e-12" in text
        and "tiny_cnn repeat 0 fold 1: this machine repeats its own result" in text
    )
    assert suspect in text


def test_a_plugin_changed_since_the_run_is_refused(run, capsys):
    out, plugin = run()
    plugin.write_text(plugin.read_text().replace("nn.Linear(4,", "nn.Linear(4 * 1,"))
    capsys.readouterr()
    assert main(["verify", str(out)]) == 2
    assert "inputs changed since it ran (different models (tiny_cnn))" in capsys.readouterr().err


def test_a_run_without_a_recipe_says_why_it_cannot_be_verified(run, capsys):
    out, _ = run()
    _edit(out, "DELETE FROM meta WHERE key = 'recipe'")
    capsys.readouterr()
    assert main(["verify", str(out)]) == 2
    assert "keeps no recipe to redo its jobs" in capsys.readouterr().err
