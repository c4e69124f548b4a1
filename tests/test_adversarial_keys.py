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
    return main([*args, "--device", "cpu", "--report", "none", "--out", str(out), *extra])


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


@pytest.mark.parametrize("damaged", [0, 1])
def test_verify_refuses_a_store_with_a_nan_prediction(tiny_npz, tmp_path, capsys, damaged):
    """On main verify said "identical", exit 0. A NaN in the job it trains again or in one it does
    not: the store is damaged (cvkit never stores one), named job by job with the way out."""
    out = tmp_path / "run"
    assert _evaluate(tiny_npz, out, "--baseline", "logreg", "--jobs", "1") == 0
    with Store(out) as store:
        jobs = sorted(store.jobs(), key=lambda job: job["fold"])
    with sqlite3.connect(out / STORE_NAME) as db:
        db.execute(
            "UPDATE predictions SET probs = ? WHERE job_key = ? AND sample_idx = "
            "(SELECT MIN(sample_idx) FROM predictions WHERE job_key = ?)",
            (json.dumps([float("nan"), float("nan")]), jobs[damaged]["key"], jobs[damaged]["key"]),
        )
    capsys.readouterr()
    assert main(["verify", str(out), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"logreg repeat 0 fold {jobs[damaged]['fold']} seed 0 is damaged" in err
    assert "NaN or infinite" in err and "Traceback" not in err


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
    # In one process, one job after another: what a plugin leaves behind meets the next job.
    options = dict(
        baseline="logreg", data=tiny, folds=2, repeats=1, epochs=1, jobs=1, device="cpu", executor="inprocess"
    )
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


# Item 3: a plugin's local imports and declared files are in its identity; precision in the
# feature-cache key.

HEADX = """
import numpy as np

import helper


class Trainer:
    def fit(self, train, val, context):
        self.n_classes = context.n_classes

    def predict_proba(self, data):
        p = np.full((len(data), self.n_classes), (1 - helper.SHARE) / (self.n_classes - 1))
        p[:, 0] = helper.SHARE
        return p


def make_trainer(context):
    return Trainer()
"""


def _cli(args, cwd):
    """cvkit in a fresh process (a plugin's helper is imported anew), from ``cwd``, which is on
    the path there (as with ``python script.py``)."""
    import os
    import subprocess
    import sys

    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-c", "import sys; from cvkit.cli import main; sys.exit(main())", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
    )


def test_editing_a_module_the_plugin_imports_trains_it_again(tiny_npz, tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "headx.py").write_text(HEADX)
    (folder / "helper.py").write_text("SHARE = 0.25\n")
    reports = tmp_path / "reports"
    args = ["evaluate", "headx.py", "--baseline", "logreg", "--data", str(tiny_npz), "--folds", "2"]
    args += ["--repeats", "1", "--epochs", "1", "--jobs", "1", "--device", "cpu", "--report", "none", "--out"]
    # From the plugin's folder, so that the original code imports helper.py too.
    assert _cli([*args, str(reports / "a")], folder).returncode == 0
    (folder / "helper.py").write_text("SHARE = 0.75\n")
    assert _cli([*args, str(reports / "b")], folder).returncode == 0
    with Store(reports / "b") as store:
        reused = {job["model"] for job in store.jobs() if job["reused_from"]}
    assert reused == {"logreg"}  # the unchanged baseline only
    b = _predictions(reports / "b")
    assert all(probs[0] == 0.75 for (model, *_), probs in b.items() if model == "headx")
    # Resuming a's folder under the edited helper is refused, not answered with a's numbers.
    resumed = _cli([*args, str(reports / "a")], folder)
    assert resumed.returncode == 2 and "different models (headx)" in resumed.stderr


def _digest(path):
    from cvkit.trainers import load_plugin

    return load_plugin(str(path)).digest


def test_the_plugin_digest_follows_its_folder_modules_transitively(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "lib" / "blocks.py").write_text("WIDTH = 4\n")
    (tmp_path / "helper.py").write_text("from lib.blocks import WIDTH\n")
    (tmp_path / "unrelated.py").write_text("X = 1\n")
    plugin = tmp_path / "uses_helper.py"
    plugin.write_text("def make_trainer(context):\n    import helper  # a lazy import counts too\n")
    monkeypatch.chdir(tmp_path.parent)  # not the plugin's folder
    first = _digest(plugin)
    (tmp_path / "unrelated.py").write_text("X = 2\n")  # not imported: no new identity
    assert _digest(plugin) == first
    (tmp_path / "lib" / "blocks.py").write_text("WIDTH = 8\n")  # imported through helper.py
    assert _digest(plugin) != first


def test_a_plugin_imports_a_module_beside_it_from_any_folder(tmp_path, monkeypatch):
    from cvkit.trainers import load_plugin

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "helper_beside.py").write_text("SHARE = 0.5\n")
    plugin = folder / "beside.py"
    plugin.write_text("import helper_beside\n\n\ndef make_trainer(context):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))  # undone after the test
    assert load_plugin(str(plugin)).name == "beside"


def test_files_a_plugin_declares_in_depends_are_in_its_identity(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "head.pt").write_bytes(b"\x00" * 64)
    plugin = tmp_path / "with_checkpoint.py"
    plugin.write_text('DEPENDS = ["weights/head.pt"]\n\n\ndef make_trainer(context):\n    pass\n')
    first = _digest(plugin)
    (tmp_path / "weights" / "head.pt").write_bytes(b"\x01" * 64)
    assert _digest(plugin) != first
    (tmp_path / "weights" / "head.pt").unlink()
    assert main(["evaluate", str(plugin), "--baseline", "logreg", "--folds", "2", "--repeats", "1"]) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if "DEPENDS" in line]
    assert len(error) == 1 and "Traceback" not in error[0]
    assert f"{plugin}: DEPENDS names 'weights/head.pt', which does not exist" in error[0]


def test_the_feature_cache_key_holds_the_precision_features_are_computed_in(tmp_path):
    import torch
    from torch import nn

    from cvkit.trainers._frozen import FeatureCache, backbone_digest

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 16, 16), dtype=np.uint8)

    def prepare(x):
        return x.float().div(127.5).sub(1.0)

    exact = FeatureCache(tmp_path).features(backbone, images, "cpu", prepare).numpy()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a trainer computing in bf16
        reduced = FeatureCache(tmp_path).features(backbone, images, "cpu", prepare).numpy()
    assert not np.array_equal(exact, reduced)  # not the float32 features from the disk cache
    # The same weights' bytes in another dtype, and another CPU thread count, are other keys.
    zeros = nn.Linear(2, 2)
    nn.init.zeros_(zeros.weight), nn.init.zeros_(zeros.bias)
    assert backbone_digest(zeros.half(), "cpu") != backbone_digest(zeros.bfloat16(), "cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = backbone_digest(backbone, "cpu")
        torch.set_num_threads(2)
        assert backbone_digest(backbone, "cpu") != one
    finally:
        torch.set_num_threads(threads)
