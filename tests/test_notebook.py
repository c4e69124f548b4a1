"""cvkit in a notebook: a run displays as its verdict and metric tables, loads back with
cvkit.load, speaks one column vocabulary, shows progress, and leaves the user's global state
(matplotlib, random generators, torch, warnings, logging) as it found it."""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import random
import re
import shutil
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

import cvkit
from cvkit.errors import StoreError
from cvkit.report import write_predictions_csv, write_reports

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_CLASS = "<script>alert(1)</script>\x1b[31m"
HOSTILE_PLUGIN = "att<b>n\u202egnp"  # markup and a right-to-left override in a file name


def _global_state() -> dict:
    """Everything a library called from a notebook could change behind the user's back."""
    loggers = {
        name: (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    return dict(
        backend=matplotlib.get_backend(),
        rc={k: str(v) for k, v in matplotlib.rcParams.items()},
        random=random.getstate(),
        numpy=np.random.get_state()[1].tobytes(),
        torch=torch.random.get_rng_state().numpy().tobytes(),
        torch_dtype=torch.get_default_dtype(),
        torch_threads=torch.get_num_threads(),
        torch_deterministic=torch.are_deterministic_algorithms_enabled(),
        cudnn=(torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
        warnings=list(warnings.filters),
        root_logger=(logging.root.level, list(logging.root.handlers)),
        loggers=loggers,
        environ=dict(os.environ),
    )


@pytest.fixture(scope="module")
def notebook_run(tiny, tmp_path_factory):
    """A tiny real run (two models, 2 folds x 1 repeat, hostile names), with the global state a
    user had before ``evaluate`` + ``write_reports`` and after them."""
    root = tmp_path_factory.mktemp("notebook")
    plugin = root / f"{HOSTILE_PLUGIN}.py"
    shutil.copy(ROOT / "plugins" / "fc_attention.py", plugin)
    data = dataclasses.replace(tiny, class_names=("benign & co", HOSTILE_CLASS), loaded_with=None)
    user_backend = matplotlib.get_backend()
    matplotlib.use("pdf")  # a user's own choice, not the Agg the reports draw with
    try:
        random.seed(7)
        np.random.seed(7)
        torch.manual_seed(7)
        # Modules that register loggers or filters when first imported are imported already in a
        # notebook that used them once: import them now, so that only what evaluate does counts.
        cvkit.evaluate([], data=data, baseline="logreg", folds=2, repeats=1, out=root / "warm")
        before = _global_state()
        # jobs=1: trained in this process, where training seeds torch and sets its threads.
        results = cvkit.evaluate(
            str(plugin), data=data, folds=2, repeats=1, epochs=1, jobs=1, out=root / "run"
        )
        written = write_reports(results, cvkit.compare(results))
        after = _global_state()
    finally:
        matplotlib.use(user_backend)
    return results, written, before, after


def test_evaluate_and_reports_leave_global_state_alone(notebook_run):
    _, written, before, after = notebook_run
    assert written["html"].is_file()
    # A logger that a lazily imported module creates is not a configuration change: compare the
    # loggers that existed before.
    after = dict(after, loggers={n: s for n, s in after["loggers"].items() if n in before["loggers"]})
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == []


def test_repr_says_what_the_run_is(notebook_run):
    results = notebook_run[0]
    text = repr(results)
    assert text.startswith("<cvkit.Results: resnet18 vs att<b>n\\u202egnp;")
    assert "2 folds x 1 repeat x 1 seed; 60 samples; 4/4 jobs done" in text
    assert f"run folder {results.run_dir}>" in text


def test_html_repr_holds_the_verdict_and_metric_tables_escaped(notebook_run):
    results = notebook_run[0]
    page = results._repr_html_()
    verdict = re.search(r'<table class="cvkit-verdict">.*?</table>', page, re.S).group(0)
    assert "Verdict: does the variant beat resnet18?" in verdict
    row = re.search(r"<tbody><tr><td>(.*?)</td>.*?<strong>(\w+)</strong>", verdict).groups()
    assert row[0] == "att&lt;b&gt;n\\u202egnp"  # escaped, and the override shown, not obeyed
    assert row[1] in ("better", "worse", "equivalent", "inconclusive")
    metrics = re.search(r'<table class="cvkit-metrics">.*?</table>', page, re.S).group(0)
    for label in ("AUC", "accuracy", "balanced acc.", "sensitivity", "specificity", "F1", "Brier"):
        assert f"<tr><td>{label}</td>" in metrics
    assert "positive class = &lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m" in metrics
    assert "<script>" not in page and "\x1b" not in page and "\u202e" not in page


def test_html_repr_of_a_run_without_variants(tiny, tmp_path):
    results = cvkit.evaluate([], data=tiny, baseline="logreg", folds=2, repeats=1, out=tmp_path / "run")
    page = results._repr_html_()
    assert "Only the baseline was trained: no variant to compare with it." in page
    assert 'class="cvkit-verdict"' not in page and "<tr><td>AUC</td>" in page
    assert repr(results).startswith("<cvkit.Results: logreg; 2 folds x 1 repeat x 1 seed; 60 samples")


def test_load_opens_an_old_run_and_refuses_a_folder_that_is_not_one(notebook_run, tmp_path):
    results = notebook_run[0]
    again = cvkit.load(results.run_dir)
    assert isinstance(again, cvkit.Results) and repr(again) == repr(results)
    assert again.metrics.equals(results.metrics)
    with pytest.raises(StoreError, match=r"no cvkit run here \(missing cvkit.sqlite\)"):
        cvkit.load(tmp_path)


def test_exported_csv_and_to_pandas_share_one_column_vocabulary(notebook_run, tmp_path):
    results = notebook_run[0]
    predictions = results.to_pandas().predictions
    write_predictions_csv(results, tmp_path / "p.csv")
    with open(tmp_path / "p.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == [c for c in predictions.columns if c not in ("sample_idx", "rule")]
    # label: the class name, as in data manifests; label_index: its position in class_names.
    assert {"label", "label_index"} <= set(header)
    names = np.array(results.class_names)[predictions["label_index"].to_numpy()]
    assert (predictions["label"].to_numpy() == names).all()


def test_example_notebook_runs_and_shows_progress_and_the_html_repr(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(ROOT / "docs" / "example.ipynb", as_version=4)
    # The kernel runs this interpreter (a kernel spec's "python" is sys.executable): the cvkit under test.
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    html = [out.data["text/html"] for out in outputs if "text/html" in out.get("data", {})]
    # The progress line, updated in place to its last state: every job done, every epoch counted.
    assert any(re.search(r"cvkit: jobs 4/4; epochs 4/4; elapsed \d\d:\d\d:\d\d", h) for h in html)
    verdict = [h for h in html if 'class="cvkit-verdict"' in h]
    assert len(verdict) == 1
    assert "Verdict: does the variant beat resnet18?" in verdict[0]
    verdicts = "better|worse|equivalent|inconclusive"
    assert re.search(rf"<td>fc_attention</td>.*<strong>({verdicts})</strong>", verdict[0])
    assert 'class="cvkit-metrics"' in verdict[0]
    assert (tmp_path / "example-run" / "cvkit.sqlite").is_file()
