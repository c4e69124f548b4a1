import csv
import json

from cvkit.cli import main


def _evaluate(tiny_npz, out, *extra):
    return main(
        [
            "evaluate",
            "plugins/fc_attention.py",
            "--data",
            str(tiny_npz),
            "--folds",
            "3",
            "--repeats",
            "1",
            "--epochs",
            "1",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_evaluate_prints_tables_and_writes_json_and_export(tiny_npz, tmp_path, capsys):
    assert _evaluate(tiny_npz, tmp_path / "run", "--json", str(tmp_path / "s.json")) == 0
    captured = capsys.readouterr()
    assert "positive class: malignant (default: the minority class" in captured.err
    assert "Test-fold metrics, positive class = malignant" in captured.out
    assert "fc_attention minus resnet18, per fold" in captured.out
    assert "6 jobs trained, 0 resumed" in captured.out

    summary = json.loads((tmp_path / "s.json").read_text())
    assert set(summary["models"]) == {"resnet18", "fc_attention"}
    assert len(summary["models"]["fc_attention"]["folds"]) == 3
    assert summary["run"]["data"]["class_names"][summary["run"]["data"]["positive"]] == "malignant"

    assert main(["export", str(tmp_path / "run"), "--predictions", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 2 * 60
    assert {
        "model",
        "repeat",
        "fold",
        "seed_index",
        "seed",
        "sample_id",
        "label",
        "prob_malignant",
        "prob_normal/benign",
    } <= set(rows[0])
    assert abs(float(rows[0]["prob_malignant"]) + float(rows[0]["prob_normal/benign"]) - 1) < 1e-6

    assert _evaluate(tiny_npz, tmp_path / "run") == 0
    assert "0 jobs trained, 6 resumed" in capsys.readouterr().out


def test_an_unknown_report_format_is_refused_before_any_training(tiny_npz, tmp_path, capsys):
    assert _evaluate(tiny_npz, tmp_path / "run", "--report", "html,pdf") == 2
    err = capsys.readouterr().err
    assert "--report pdf: choose from html, md, latex" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_named_positive_class(tiny_npz, tmp_path, capsys):
    assert _evaluate(tiny_npz, tmp_path / "run", "--positive", "normal/benign") == 0
    assert "positive class = normal/benign" in capsys.readouterr().out


def test_progress_shows_jobs_and_epochs_on_a_terminal(tiny, tmp_path):
    import io

    from rich.console import Console

    import cvkit
    from cvkit.runner import JobProgress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    cvkit.evaluate(
        [],
        data=tiny,
        folds=2,
        repeats=1,
        epochs=2,
        out=tmp_path / "run",
        progress=JobProgress(console, epochs=2),
    )
    text = buffer.getvalue()
    assert "resnet18 r0 f1" in text and "jobs" in text and "2/2" in text
