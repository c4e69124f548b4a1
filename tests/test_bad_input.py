"""The bad-input matrix: every user mistake gets one line naming what, where and what to do,
exit status 2 and no traceback (unless --debug). Each case builds its own broken input."""

import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cvkit.cli import main

N_IMAGES = 20


def _image(path, size=8, mode="L", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def _manifest(tmp_path, rows=None, header="image,label,patient_id,age", edit=None):
    """A valid manifest of 20 grey 8x8 images (``img/<i>.png``), then ``edit(rows)`` breaks it."""
    for i in range(N_IMAGES):
        _image(tmp_path / "img" / f"{i}.png", value=i)
    rows = rows or [
        f"img/{i}.png,{'malignant' if i % 2 else 'benign'},p{i},{40 + i}" for i in range(N_IMAGES)
    ]
    if edit:
        edit(rows)
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _evaluate(data, *options):
    return ["evaluate", "--data", str(data), "--folds", "2", "--repeats", "1", "--epochs", "1", *options]


def _replace(index, old, new):
    def edit(rows):
        rows[index] = rows[index].replace(old, new)

    return edit


def _store(tmp_path, schema=None, garbage=False):
    run = tmp_path / "run"
    run.mkdir()
    if garbage:
        (run / "cvkit.sqlite").write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(run / "cvkit.sqlite") as db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(schema),))
    return run


def _truncated_png(tmp_path):
    path = _manifest(tmp_path)
    png = (tmp_path / "img" / "3.png").read_bytes()
    (tmp_path / "img" / "3.png").write_bytes(png[: len(png) // 2])
    return path


def _mixed_size(tmp_path):
    path = _manifest(tmp_path)
    _image(tmp_path / "img" / "5.png", size=12, value=5)
    return path


def _mixed_colour(tmp_path):
    path = _manifest(tmp_path)
    _image(tmp_path / "img" / "6.png", mode="RGB", value=6)
    return path


def _folder(tmp_path, *classes, empty=()):
    for name in classes:
        for i in range(4):
            _image(tmp_path / "folder" / name / f"{i}.png", value=i)
    for name in empty:
        (tmp_path / "folder" / name).mkdir(parents=True)
    (tmp_path / "folder").mkdir(exist_ok=True)
    return tmp_path / "folder"


def _npz(tmp_path, **arrays):
    path = tmp_path / "breastmnist_bad.npz"
    np.savez(path, **arrays)
    return path


def _extra_csv(tmp_path, text):
    path = tmp_path / "extra.csv"
    path.write_text(text)
    return path


def _plugin(tmp_path, source):
    path = tmp_path / "variant.py"
    path.write_text(source)
    return path


ones = dict(images=np.zeros((10, 8, 8), np.uint8), labels=np.arange(10)[:, None] % 2)
CASES = {
    # --- image files
    "missing image file": (
        lambda t: _evaluate(_manifest(t, edit=_replace(2, "img/2.png", "img/gone.png"))),
        "manifest.csv, row 4 (img/gone.png): image file not found",
    ),
    "corrupt image file": (
        lambda t: (
            _manifest(t),
            (t / "img" / "4.png").write_bytes(b"garbage"),
            _evaluate(t / "manifest.csv"),
        )[-1],
        "row 6 (img/4.png): cannot read the image",
    ),
    "truncated image file": (
        lambda t: _evaluate(_truncated_png(t)),
        "row 5 (img/3.png): cannot read the image",
    ),
    "images of mixed sizes": (
        lambda t: _evaluate(_mixed_size(t)),
        "row 7 (img/5.png): image size (12, 12) differs from (8, 8) of the first image; pass --image-size N",
    ),
    "grey and colour images mixed": (
        lambda t: _evaluate(_mixed_colour(t)),
        "row 8 (img/6.png): a colour image among grey ones",
    ),
    "empty data folder": (lambda t: _evaluate(_folder(t)), "no class sub-folders"),
    "class folder without images": (
        lambda t: _evaluate(_folder(t, "benign", empty=["malignant"])),
        "malignant: class folder holds no images",
    ),
    "folder with one class": (lambda t: _evaluate(_folder(t, "benign")), "only one class present (benign)"),
    # --- manifests
    "manifest without a label column": (
        lambda t: _evaluate(_manifest(t, header="image,diagnosis,patient_id,age")),
        "missing column(s) label",
    ),
    "manifest without an image column": (
        lambda t: _evaluate(_manifest(t, header="picture,label,patient_id,age")),
        "missing column(s) image path",
    ),
    "manifest with no rows": (
        lambda t: (
            _manifest(t),
            (t / "manifest.csv").write_text("image,label\n"),
            _evaluate(t / "manifest.csv"),
        )[-1],
        "the manifest has no rows",
    ),
    "manifest that is not text": (
        lambda t: (
            _manifest(t),
            (t / "manifest.csv").write_bytes(bytes(range(256)) * 4),
            _evaluate(t / "manifest.csv"),
        )[-1],
        "manifest.csv: not a text CSV file",
    ),
    "empty label cell": (
        lambda t: _evaluate(_manifest(t, edit=_replace(3, ",malignant,", ",,"))),
        "manifest.csv, row 5: empty label",
    ),
    "duplicate sample ids": (
        lambda t: _evaluate(_manifest(t, edit=_replace(1, "img/1.png", "img/0.png"))),
        "duplicate sample id 'img/0.png'",
    ),
    "a single class": (
        lambda t: _evaluate(_manifest(t, rows=[f"img/{i}.png,benign,p{i},1" for i in range(N_IMAGES)])),
        "only one class present (benign)",
    ),
    "fewer samples of a class than folds": (
        lambda t: (
            _evaluate(
                _manifest(
                    t,
                    rows=[
                        f"img/{i}.png,{'malignant' if i < 3 else 'benign'},p{i},1" for i in range(N_IMAGES)
                    ],
                )
            )
            + ["--folds", "5"]
        ),
        "class 'malignant' has only 3 samples, fewer than --folds 5; use --folds 3",
    ),
    "fewer groups than folds": (
        lambda t: (
            _evaluate(
                _manifest(
                    t,
                    rows=[
                        f"img/{i}.png,{'malignant' if i % 2 else 'benign'},p{i % 3},1"
                        for i in range(N_IMAGES)
                    ],
                )
            )
            + ["--folds", "4"]
        ),
        "only 3 groups for --folds 4",
    ),
    "groups that hold a whole class": (
        lambda t: _evaluate(
            _manifest(
                t,
                rows=[
                    f"img/{i}.png,{'malignant' if i < 4 else 'benign'},{'p0' if i < 4 else f'p{i}'},1"
                    for i in range(N_IMAGES)
                ],
            ),
            "--val-fraction",
            "0.3",
        ),
        "class 'malignant' is missing from the training part of repeat 0, fold",
    ),
    "unknown positive class": (
        lambda t: _evaluate(_manifest(t), "--positive", "cancer"),
        "positive class 'cancer' is not a class of manifest",
    ),
    # --- extra features
    "NaN in extra features": (
        lambda t: _evaluate(_manifest(t, edit=_replace(4, ",44", ",nan"))),
        "extra feature column 'age' has 1 missing value(s); pass --impute mean",
    ),
    "inf in extra features": (
        lambda t: _evaluate(_manifest(t, edit=_replace(4, ",44", ",inf"))),
        "row 6: column 'age' holds 'inf'; use an empty cell for a missing value",
    ),
    "text in extra features": (
        lambda t: _evaluate(_manifest(t, edit=_replace(4, ",44", ",old"))),
        "row 6: column 'age' holds 'old', not a number",
    ),
    "extra CSV without an id column": (
        lambda t: _evaluate("demo", "--extra", _extra_csv(t, "x,age\n1,2\n")),
        "extra.csv: no sample id column",
    ),
    "extra CSV missing samples": (
        lambda t: _evaluate("demo", "--extra", _extra_csv(t, "sample_id,age\nnope,2\n")),
        "extra.csv: no row for",
    ),
    # --- npz archives and paths
    "data path that does not exist": (
        lambda t: _evaluate(t / "nope.npz"),
        "nope.npz: no such file or folder",
    ),
    "unknown data format": (
        lambda t: (t / "data.txt").write_text("x") and _evaluate(t / "data.txt"),
        "data.txt: unknown data format '.txt'",
    ),
    "npz without MedMNIST arrays": (lambda t: _evaluate(_npz(t, x=np.zeros(3))), "not a MedMNIST archive"),
    "truncated npz": (
        lambda t: (
            _npz(t, **{f"{p}_{k}": v for p in ("train", "val", "test") for k, v in ones.items()}),
            (t / "breastmnist_bad.npz").write_bytes((t / "breastmnist_bad.npz").read_bytes()[:300]),
            _evaluate(t / "breastmnist_bad.npz"),
        )[-1],
        "cannot read the archive",
    ),
    "npz with more labels than images": (
        lambda t: _evaluate(
            _npz(
                t,
                **{f"{p}_images": np.zeros((10, 8, 8), np.uint8) for p in ("train", "val", "test")},
                **{f"{p}_labels": np.arange(12)[:, None] % 2 for p in ("train", "val", "test")},
            )
        ),
        "30 images but 36 labels",
    ),
    # --- design options
    "--folds 1": (lambda t: _evaluate("demo", "--folds", "1"), "--folds must be at least 2, got 1"),
    "--repeats 0": (lambda t: _evaluate("demo", "--repeats", "0"), "--repeats must be at least 1, got 0"),
    "--epochs 0": (lambda t: _evaluate("demo", "--epochs", "0"), "--epochs must be at least 1, got 0"),
    "--batch-size 1": (
        lambda t: _evaluate("demo", "--batch-size", "1"),
        "--batch-size must be at least 2, got 1",
    ),
    "--val-fraction 1.5": (
        lambda t: _evaluate("demo", "--val-fraction", "1.5"),
        "--val-fraction must lie strictly between 0 and 1, got 1.5",
    ),
    "--image-size 0": (
        lambda t: _evaluate("demo", "--image-size", "0"),
        "--image-size must be at least 4, got 0",
    ),
    "--holdout of a part the data lacks": (
        lambda t: _evaluate("demo", "--holdout", "test"),
        "--holdout test",
    ),
    "--param for a model not in the run": (
        lambda t: _evaluate("demo", "--param", "nope.hidden=3"),
        "hyper-parameters given for nope",
    ),
    # --- plugins
    "plugin path that does not exist": (
        lambda t: _evaluate("demo") + [str(t / "nope.py")],
        "nope.py: no such plugin file",
    ),
    "plugin with a syntax error": (
        lambda t: _evaluate("demo") + [str(_plugin(t, "def build_model(context:\n"))],
        "variant.py:1",
    ),
    "plugin without a model hook": (lambda t: _evaluate("demo") + [str(_plugin(t, "x = 1\n"))], "variant.py"),
    # --- stores
    "unreadable store": (lambda t: ["report", str(_store(t, garbage=True))], "cannot open the run store"),
    "store of an incompatible cvkit version": (
        lambda t: ["report", str(_store(t, schema=99))],
        "store schema 99 is not the",
    ),
    "folder without a store": (lambda t: ["report", str(t)], "no cvkit run here"),
    "export of a folder without a store": (
        lambda t: ["export", str(t / "nope"), "--predictions", "x.csv"],
        "no cvkit run here",
    ),
    "verify of a folder without a store": (lambda t: ["verify", str(t)], "no cvkit run here"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written into the repository
    build, message = CASES[case]
    argv = build(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cvkit: error:")]
    assert len(errors) == 1, err
    assert message in errors[0], err
    assert "Traceback" not in err


def test_a_mistake_shows_its_traceback_only_with_debug(tmp_path):
    command = [sys.executable, "-m", "cvkit.cli", "evaluate", "--data", str(tmp_path / "nope.npz")]
    plain = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    debug = subprocess.run(
        command[:3] + ["--debug"] + command[3:], capture_output=True, text=True, cwd=tmp_path
    )
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith("cvkit: error: ")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DataError" in debug.stderr
