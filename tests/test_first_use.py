"""Issue 21, first use: a resumed run analysed as asked, duplicates across the hold-out boundary,
and every warning kept with the run and its documents."""

import csv
import json
import re
import shutil

import numpy as np
import pytest

from cvkit.cli import main
from cvkit.data import make_demo

RUN = ["--folds", "2", "--repeats", "1", "--epochs", "1"]


def _evaluate(data, out, *extra):
    return main(["evaluate", "plugins/fc_attention.py", "--data", str(data), *RUN, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A BreastMNIST-style archive (0 = malignant, the default positive) and a finished run on it."""
    folder = tmp_path_factory.mktemp("first")
    tiny = make_demo(60, image_size=16, seed=1)
    path = folder / "breastmnist_tiny.npz"
    images, labels = tiny.images[:, 0], 1 - tiny.labels[:, None]
    np.savez(
        path,
        **{f"{part}_images": images[s] for part, s in PARTS.items()},
        **{f"{part}_labels": labels[s] for part, s in PARTS.items()},
    )
    assert _evaluate(path, folder / "run", "--json", str(folder / "run.json")) == 0
    return path, folder / "run", json.loads((folder / "run.json").read_text())


PARTS = dict(train=slice(0, 40), val=slice(40, 50), test=slice(50, 60))


def _unwrapped(terminal: str) -> str:
    """The terminal's text without panel borders and line breaks (it wraps long titles and cells)."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", terminal).split())


def _documents(run):
    return {
        "md": (run / "report.md").read_text(),
        "html": (run / "report.html").read_text(),
        "latex": (run / "table.tex").read_text(),
    }


ANALYSIS_SETTINGS = {
    # option: (value, text each document then shows: Markdown, HTML, LaTeX), the JSON check
    "--positive": (
        "normal/benign",
        (
            "positive class: normal/benign",
            "positive class: <b>normal/benign</b>",
            "positive class normal/benign",
        ),
        lambda s: s["run"]["data"]["positive"] == 1,
    ),
    "--metric": (
        "sensitivity",
        ("verdict on sensitivity",) * 3,
        lambda s: s["comparison"]["metric"] == "sensitivity",
    ),
    "--rope": ("0.05", ("ROPE ±0.05",) * 3, lambda s: s["comparison"]["rope"] == 0.05),
    "--alpha": ("0.1", ("alpha 0.1 ",) * 3, lambda s: s["comparison"]["alpha"] == 0.1),
}


@pytest.mark.parametrize("option", list(ANALYSIS_SETTINGS))
def test_an_analysis_setting_on_resume_reanalyses_every_document(option, first_run, tmp_path, capsys):
    data, first, before = first_run
    value, shown, in_json = ANALYSIS_SETTINGS[option]
    run = tmp_path / "run"
    shutil.copytree(first, run)
    capsys.readouterr()
    assert _evaluate(data, run, option, value, "--json", str(tmp_path / "s.json")) == 0
    out = capsys.readouterr().out
    assert "0 jobs trained, 4 resumed" in out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert in_json(summary)
    documents = _documents(run)
    for (kind, text), expected in zip(documents.items(), shown):
        assert expected in text, kind
    assert f"{option} {value}" in documents["md"]  # the command shown is the one that made the documents
    if option != "--positive":
        return
    # One positive class everywhere: the terminal's panel and table, every document, the metrics.
    assert "1 = normal/benign (positive)" in out and "positive class = normal/benign" in out
    assert "malignant (positive)" not in out
    assert "1 = normal/benign (positive)" in documents["md"]
    assert "malignant (positive)" not in documents["md"] + documents["html"]
    assert "malignant" not in documents["latex"]
    for model, scores in summary["models"].items():
        old = before["models"][model]["folds"]
        for fold, previous in zip(scores["folds"], old):
            assert fold["sensitivity"] == pytest.approx(previous["specificity"])
            assert fold["specificity"] == pytest.approx(previous["sensitivity"])
    # The sensitivity is that of the class it names, recomputed from the exported predictions.
    assert main(["export", str(run), "--predictions", str(tmp_path / "p.csv")]) == 0
    rows = [
        r for r in csv.DictReader(open(tmp_path / "p.csv")) if r["model"] == "resnet18" and r["fold"] == "0"
    ]
    benign = [r for r in rows if r["label"] == "normal/benign"]
    found = np.mean([float(r["prob_normal/benign"]) >= 0.5 for r in benign])
    assert summary["models"]["resnet18"]["folds"][0]["sensitivity"] == pytest.approx(found)
    # Regenerated later, the documents keep the positive class the run was last analysed with.
    assert main(["report", str(run), "--md"]) == 0
    assert "positive class: normal/benign" in (run / "report.md").read_text()
    # Re-analysed by `cvkit report --positive` for the other class: every line follows it again.
    capsys.readouterr()
    assert main(["report", str(run), "--md", "--positive", "malignant"]) == 0
    out = _unwrapped(capsys.readouterr().out)
    assert "positive class = malignant" in out and "0 = malignant (positive)" in out
    assert "normal/benign (positive)" not in out
    markdown = (run / "report.md").read_text()
    assert "positive class: malignant" in markdown and "0 = malignant (positive)" in markdown
    # The command shown names the run's own class: the set-up and the checklist say why they differ.
    assert "--positive normal/benign" in markdown
    assert "re-analysed: the run, and the command below, name normal/benign as the positive class" in markdown
    assert "named when re-analysing (--positive); the run itself was made for normal/benign" in markdown
    # cvkit compare names the class its sensitivity is of.
    for positive in ("malignant", "normal/benign"):
        assert main(["compare", str(run), "--metric", "sensitivity", "--positive", positive]) == 0
        assert f"positive class: {positive}" in _unwrapped(capsys.readouterr().out)
    assert main(["compare", str(run), "--positive", "benign"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cvkit: error: --positive 'benign' is not a class") and err.count("\n") == 1


@pytest.mark.parametrize("option, value", [("--lr", "0.01"), ("--epochs", "2")])
def test_a_training_setting_on_resume_is_refused_in_one_line(option, value, first_run, tmp_path, capsys):
    data, first, _ = first_run
    run = tmp_path / "run"
    shutil.copytree(first, run)
    stored = (run / "report.md").read_text()
    capsys.readouterr()
    assert _evaluate(data, run, option, value) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("positive class: malignant")
    assert (
        err[1].startswith("cvkit: error:") and "holds a run with other settings (different config)" in err[1]
    )
    assert (run / "report.md").read_text() == stored


def test_with_more_classes_another_positive_class_is_a_training_setting(tmp_path):
    """With three classes val_auc scores the positive class's one-vs-rest AUC: another positive
    class chooses other checkpoints, so the run refuses it and no job is reused for it."""
    import cvkit
    from cvkit.data import Dataset
    from cvkit.errors import ConfigError

    demo = make_demo(60, image_size=16, seed=1)
    three = Dataset(
        images=demo.images,
        labels=np.arange(60) % 3,
        class_names=("a", "b", "c"),
        positive=0,
        sample_ids=demo.sample_ids,
        name="three",
    )
    options = dict(data=three, baseline="logreg", folds=2, repeats=1, epochs=1, reports_dir=tmp_path)
    cvkit.evaluate(positive="a", out=tmp_path / "a", **options)
    with pytest.raises(ConfigError, match=r"different positive class b \(with more than two classes"):
        cvkit.evaluate(positive="b", out=tmp_path / "a", **options)
    other = cvkit.evaluate(positive="b", out=tmp_path / "b", **options)
    assert other.counts.reused == 0 and other.counts.trained == 2
    with pytest.raises(ConfigError, match=r"with more than two classes the positive class \(a\) chose"):
        cvkit.Results(tmp_path / "a", positive="b")
    assert cvkit.Results(tmp_path / "a", positive="a").positive_name == "a"


@pytest.fixture
def leaky_npz(tmp_path):
    """A BreastMNIST-style archive whose test part holds 3 exact and 1 re-exposed copy of training images."""
    tiny = make_demo(60, image_size=16, seed=1)
    images, labels = tiny.images[:, 0].copy(), 1 - tiny.labels[:, None]
    images[50:53] = images[0:3]
    images[53] = np.clip(images[3].astype(int) + 2, 0, 255)
    labels[50:54] = labels[0:4]
    path = tmp_path / "breastmnist_leaky.npz"
    np.savez(
        path,
        **{f"{part}_images": images[s] for part, s in PARTS.items()},
        **{f"{part}_labels": labels[s] for part, s in PARTS.items()},
    )
    return path


def test_duplicates_across_the_holdout_boundary_are_reported_and_counted(leaky_npz, tmp_path, capsys):
    json_path = tmp_path / "s.json"
    assert _evaluate(leaky_npz, tmp_path / "run", "--holdout", "test", "--json", str(json_path)) == 0
    captured = capsys.readouterr()
    warned = [line for line in captured.err.splitlines() if "straddle" in line]
    assert len(warned) == 1
    assert warned[0].startswith("cvkit: warning: 4 duplicate image pair(s) (3 exact, 1 near-identical)")
    assert "the hold-out set (test): 4 hold-out image(s)" in warned[0]
    heading = "Hold-out set (10 samples, never in any fold; 4 near-duplicates of CV images)"
    out = _unwrapped(captured.out)
    assert heading in out
    assert "train+val pooled for cross-validation; test held out (10 samples" in out
    assert "train+val+test" not in out
    documents = _documents(tmp_path / "run")
    assert f"## {heading}" in documents["md"] and heading in documents["html"]
    for text in (documents["md"], documents["html"]):
        assert "train+val pooled for cross-validation; test held out" in text and "train+val+test" not in text
    summary = json.loads(json_path.read_text())
    assert summary["run"]["holdout"]["cv_duplicates"] == 4
    assert summary["run"]["data"]["duplicates"]["holdout_pairs"] == 4

    # --dedupe drops the cross-validation copies; the hold-out set stays whole and is clean then.
    assert _evaluate(leaky_npz, tmp_path / "clean", "--holdout", "test", "--dedupe") == 0
    captured = capsys.readouterr()
    assert "dropped 4 cross-validation image(s) that copy hold-out images" in captured.err
    assert "straddle" not in captured.err
    out = _unwrapped(captured.out)
    assert "Hold-out set (10 samples, never in any fold; 0 near-duplicates of CV images)" in out
    assert "breastmnist: 46 samples" in out


def test_without_holdout_every_part_is_said_to_be_pooled(first_run, capsys):
    data, run, _ = first_run
    assert main(["report", str(run), "--md"]) == 0
    assert "train+val+test pooled for cross-validation" in _unwrapped(capsys.readouterr().out)


@pytest.fixture
def grouped_manifest(tmp_path):
    """40 PNG images of 20 patients (two each) in a manifest; images 1 and 3 repeat images 0 and 2."""
    from PIL import Image

    tiny = make_demo(40, image_size=16, seed=2)
    images = tiny.images[:, 0].copy()
    images[1], images[3] = images[0], images[2]
    (tmp_path / "img").mkdir()
    lines = ["image,label,patient_id"]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "img" / f"{i}.png")
        lines.append(f"img/{i}.png,{tiny.class_names[tiny.labels[i // 2 * 2]]},p{i // 2:02d}")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_warning_is_a_caveat_in_every_document_and_in_cvkit_report(grouped_manifest, tmp_path, capsys):
    import html

    run = tmp_path / "run"
    assert _evaluate(grouped_manifest, run, "--json", str(tmp_path / "s.json")) == 0
    captured = capsys.readouterr()
    shown = [
        line.removeprefix("cvkit: warning: ") for line in captured.err.splitlines() if "warning:" in line
    ]
    assert any(line.startswith("2 duplicate image pair(s) (2 exact") for line in shown)
    documents = _documents(run)
    markdown = documents["md"].replace("\\", "")  # the Markdown escapes _, [ and ]
    page = html.unescape(documents["html"])
    caveats = json.loads((tmp_path / "s.json").read_text())["caveats"]
    assert "## Caveats" in markdown and "<h2>Caveats</h2>" in page
    for line in shown:
        assert line in markdown.split("## Caveats")[1]
        assert line in page.split("<h2>Caveats</h2>")[1]
        assert line in caveats
    # The set-up states the grouping, the duplicates found and that --dedupe was not used.
    for text in (markdown, page, _unwrapped(captured.out)):
        assert "grouping" in text and "by patient_id (20 groups)" in text
        assert "2 pair(s) in the cross-validation data (2 exact)" in text and "--dedupe not used" in text

    # Kept with the run: `cvkit report` shows them again, in the terminal and the documents it rewrites.
    (run / "report.md").unlink()
    assert main(["report", str(run), "--md"]) == 0
    out = _unwrapped(capsys.readouterr().out)
    rewritten = (run / "report.md").read_text().replace("\\", "")
    for line in shown:
        assert line in out and line in rewritten
