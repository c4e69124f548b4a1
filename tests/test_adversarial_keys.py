"""Issue 22, hardening round two: every input that can change a prediction is in the job key, and
each job starts from the same process state (items 2, 3, 5 and 7)."""

import json
import sqlite3

import numpy as np
import pytest

from cvkit.cli import main
from cvkit.runner import STORE_NAME, Store


def _evaluate(npz, out, *extra):
    """E of the issue: the demo recipe at its smallest (2 folds, 1 repeat, 1 epoch)."""
    args = ["evaluate", "--data", str(npz), "--folds", "2", "--repeats", "1", "--epochs", "1"]
    return main([*args, "--report", "none", "--out", str(out), *extra])


def _predictions(run_dir) -> dict:
    with Store(run_dir) as store:
        return {
            (model, repeat, fold, rule, sample): probs
            for model, repeat, fold, _, _, rule, sample, probs in store.predictions(rule="last")
        }


def _counts(run_dir) -> dict:
    with Store(run_dir) as store:
        jobs = store.jobs()
    return {"reused": sum(job["reused_from"] is not None for job in jobs), "done": len(jobs)}


# Item 2: the thread count a job trains with is part of its key.


def test_a_run_with_other_threads_per_job_is_not_reused(tiny_npz, tmp_path, capsys):
    reports = tmp_path / "reports"
    assert _evaluate(tiny_npz, reports / "a", "--threads-per-job", "2", "--jobs", "1") == 0
    assert _evaluate(tiny_npz, reports / "b", "--jobs", "1") == 0
    # The same command alone, with nothing to reuse from: what b's own jobs give.
    assert _evaluate(tiny_npz, tmp_path / "alone" / "c", "--jobs", "1") == 0
    assert _counts(reports / "b")["reused"] == 0
    b, c, a = _predictions(reports / "b"), _predictions(tmp_path / "alone" / "c"), _predictions(reports / "a")
    assert b.keys() == c.keys() and all(np.array_equal(b[k], c[k]) for k in b)
    # The threads do change the predictions' last bits here: reusing a's jobs would have been wrong.
    assert any(not np.array_equal(a[k], b[k]) for k in b)
    capsys.readouterr()
    assert main(["verify", str(reports / "b"), "--jobs", "1"]) == 0
    # Resuming a's folder with another thread count is refused, not mixed into it.
    assert _evaluate(tiny_npz, reports / "a", "--jobs", "1") == 2
    assert "threads_per_job" in capsys.readouterr().err


# Item 7: verify compares NaN-aware and reports NaN predictions.


def test_verify_fails_a_store_with_a_nan_prediction(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _evaluate(tiny_npz, out, "--baseline", "logreg", "--jobs", "1") == 0
    with sqlite3.connect(out / STORE_NAME) as db:
        key, rule, sample, probs = db.execute(
            "SELECT job_key, rule, sample_idx, probs FROM predictions ORDER BY job_key, rule, sample_idx"
        ).fetchone()
        probs = json.loads(probs)
        probs[0] = float("nan")
        db.execute(
            "UPDATE predictions SET probs = ? WHERE job_key = ? AND rule = ? AND sample_idx = ?",
            (json.dumps(probs), key, rule, sample),
        )
    capsys.readouterr()
    # Every job trained again: the NaN one is compared, and differs from the number it retrains to.
    assert main(["verify", str(out), "--jobs", "2"]) == 1
    output = capsys.readouterr().out
    assert "identical" in output and "1 differ" in output
    assert "NaN or infinite" in output and "logreg repeat 0 fold" in output


def test_verify_reports_a_nan_prediction_in_a_job_it_does_not_train_again(tiny_npz, tmp_path, capsys):
    from cvkit.api import verify

    out = tmp_path / "run"
    assert _evaluate(tiny_npz, out, "--baseline", "logreg", "--jobs", "1") == 0
    with Store(out) as store:
        keys = [job["key"] for job in store.jobs()]
    with sqlite3.connect(out / STORE_NAME) as db:
        for key in keys:  # NaN in every job: whichever one verify samples, the others hold one too
            db.execute(
                "UPDATE predictions SET probs = ? WHERE job_key = ? AND sample_idx = "
                "(SELECT MIN(sample_idx) FROM predictions WHERE job_key = ?)",
                (json.dumps([float("nan"), float("nan")]), key, key),
            )
    verification = verify(out, jobs=1)
    assert len(verification.checks) == 1 and not verification.ok
    assert len(verification.nonfinite) == 2


# Item 5: each job starts from the same process state.

CHANGES_STATE = """
import numpy as np
import pytest
import torch


class Trainer:
    def fit(self, train, val, context):
        torch.set_default_dtype(torch.float64)  # left changed on purpose: a leak into the next job
        torch.set_num_threads(2)
        torch.use_deterministic_algorithms(True)
        torch.set_grad_enabled(False)
        self.n_classes = context.n_classes

    def predict_proba(self, data):
        return np.full((len(data), self.n_classes), 1 / self.n_classes)


def make_trainer(context):
    return Trainer()
"""

TINY_CNN = """
import torch
from torch import nn


def build_model(context):
    # What a job may rely on, whatever ran before it in this process.
    assert torch.get_default_dtype() == torch.float32 and torch.get_num_threads() == 1
    assert torch.is_grad_enabled() and not torch.are_deterministic_algorithms_enabled()
    return nn.Sequential(nn.Conv2d(context.in_channels, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, context.n_classes))
"""


def test_a_plugin_that_changes_torch_settings_is_named_and_the_next_one_is_unaffected(tmp_path, tiny):
    import warnings

    import torch

    from cvkit.api import evaluate

    (tmp_path / "leaky.py").write_text(CHANGES_STATE)
    (tmp_path / "tiny_cnn.py").write_text(TINY_CNN)
    options = dict(baseline="logreg", data=tiny, folds=2, repeats=1, epochs=1, jobs=1)
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plugins = [tmp_path / "leaky.py", tmp_path / "tiny_cnn.py"]
            both = evaluate(plugins, out=tmp_path / "r" / "both", **options)
        # The driver is left in the defaults too (the report and later runs compute in it).
        assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_grad_enabled(True)
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    assert both.counts.trained == 6 and both.counts.failed == 0
    blamed = [str(w.message) for w in caught if "process-wide settings" in str(w.message)]
    assert blamed and all(message.startswith(str(tmp_path / "leaky.py")) for message in blamed)
    assert "default dtype torch.float32 -> torch.float64" in blamed[0] and "threads 1 -> 2" in blamed[0]
    alone = evaluate([tmp_path / "tiny_cnn.py"], out=tmp_path / "other" / "alone", **options)
    b = {k: v for k, v in _predictions(tmp_path / "r" / "both").items() if k[0] == "tiny_cnn"}
    c = {k: v for k, v in _predictions(tmp_path / "other" / "alone").items() if k[0] == "tiny_cnn"}
    assert b and b.keys() == c.keys() and all(np.array_equal(b[k], c[k]) for k in b)
    assert alone.counts.reused == 0


DTYPE_ON_IMPORT = """
import torch

torch.set_default_dtype(torch.float64)


def make_trainer(context):
    pass
"""


def test_a_plugin_that_changes_torch_settings_on_import_is_named_and_undone(write_plugin):
    import torch

    from cvkit.trainers import load_plugin

    path = write_plugin("dtype_on_import", DTYPE_ON_IMPORT)
    try:
        with pytest.warns(UserWarning, match="dtype_on_import.py: importing it changed") as caught:
            load_plugin(str(path))
        assert torch.get_default_dtype() == torch.float32
    finally:
        torch.set_default_dtype(torch.float32)
    assert "default dtype torch.float32 -> torch.float64" in str(caught[0].message)
