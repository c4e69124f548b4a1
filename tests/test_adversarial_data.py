"""Issue 22, the data layer: inputs a hostile but realistic user gives that the first hardening
round missed. Each test reproduces one way cvkit read data wrongly or crashed, and holds the fix."""

import threading

import numpy as np
import pytest
from PIL import Image

from cvkit.cli import main
from cvkit.data import load_image_folder, load_manifest
from cvkit.splits import make_plan


def _grey(path, value, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)


def _evaluate(data, *options):
    return ["evaluate", "--data", str(data), "--folds", "2", "--repeats", "1", "--epochs", "1", *options]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cvkit: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


# -- manifests: group ids, missing cells, line numbers (items 4, 15, 18) -------------------------


def test_group_ids_are_normalised_like_labels_and_never_straddle_a_fold(tmp_path):
    """Item 4: "p3 " and "p3" are one patient; 20 patients of two images each stay whole."""
    rows = ["image,label,patient_id"]
    for i in range(40):
        patient = i // 2
        _grey(tmp_path / "img" / f"{i}.png", i)
        written = f"p{patient} " if i % 2 else f" p{patient}"  # the same patient, spaced two ways
        rows.append(f"img/{i}.png,{'malignant' if patient % 2 else 'benign'},{written}")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    data = load_manifest(path)
    patient = np.arange(40) // 2  # the truth, whatever the spacing
    plan = make_plan(data.labels, 2, 3, groups=data.groups, seed=0)
    for split in plan:
        for inside, outside in ((split.test, [split.train, split.val]), (split.val, [split.train])):
            shared = set(patient[inside]) & set(patient[np.concatenate(outside)])
            assert not shared, f"repeat {split.repeat} fold {split.fold}: patients {sorted(shared)} straddle"
    assert sorted(set(data.groups.tolist())) == sorted(f"p{k}" for k in range(20))


def _manifest(tmp_path, lines, header="image,label,patient_id,age"):
    for i in range(20):
        _grey(tmp_path / "img" / f"{i}.png", i)
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def _rows(n=20):
    return [f"img/{i}.png,{'malignant' if i % 2 else 'benign'},p{i},{40 + i}" for i in range(n)]


@pytest.mark.parametrize(
    "header, row, message",
    [
        # the image column last and the row cut short before it: an AttributeError on main
        ("label,age,image", "benign,43", "manifest.csv, row 5: empty image path"),
        ("image,label,patient_id,age", "img/3.png,malignant", "manifest.csv, row 5: empty group id"),
        ("image,label,patient_id,age", "img/3.png", "manifest.csv, row 5: empty label"),
    ],
)
def test_manifest_row_with_missing_cells_is_one_line_naming_the_row(
    tmp_path, capsys, monkeypatch, header, row, message
):
    """Item 15: a row with a missing cell gave an AttributeError traceback (or a group None)."""
    monkeypatch.chdir(tmp_path)
    order = header.split(",")
    full = {"image": "img/{i}.png", "label": "{label}", "patient_id": "p{i}", "age": "{age}"}
    rows = [
        ",".join(full[c] for c in order).format(i=i, label="malignant" if i % 2 else "benign", age=40 + i)
        for i in range(20)
    ]
    rows[3] = row
    assert main(_evaluate(_manifest(tmp_path, rows, header))) == 2
    assert message in _one_error(capsys)


def test_manifest_row_numbers_are_the_files_line_numbers(tmp_path, capsys, monkeypatch):
    """Item 18: blank lines count, so the line named is the line an editor shows."""
    monkeypatch.chdir(tmp_path)

    def lines(broken_row, old, new):
        rows = _rows()
        rows[broken_row] = rows[broken_row].replace(old, new)
        return rows[:1] + ["", ""] + rows[1:]  # two blank lines after the first row (file line 2)

    # Row k of the data lies on file line k + 4 (header, row 0, two blank lines).
    assert main(_evaluate(_manifest(tmp_path, lines(5, "malignant", "")))) == 2
    assert "manifest.csv, row 9: empty label" in _one_error(capsys)
    assert main(_evaluate(_manifest(tmp_path, lines(8, ",48", ",old")))) == 2
    assert "manifest.csv, row 12: column 'age' holds 'old'" in _one_error(capsys)
    assert main(_evaluate(_manifest(tmp_path, lines(6, "img/6.png", "img/gone.png")))) == 2
    assert "manifest.csv, row 10 (img/gone.png): image file not found" in _one_error(capsys)


# -- image folders: symlinks and cvkit's own output folders (items 6, 18) --------------------------


def test_symlinked_folders_and_files_are_followed_and_a_loop_ends(tmp_path):
    """Item 6: a symlinked sub-folder of a class was skipped silently; a loop must not hang."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    for i in range(3):
        _grey(data / "benign" / f"{i}.png", i)
        _grey(elsewhere / "benign_more" / f"{i}.png", 10 + i)
        _grey(elsewhere / "malignant" / f"{i}.png", 20 + i)
    _grey(elsewhere / "single.png", 30)
    (data / "malignant").symlink_to(elsewhere / "malignant", target_is_directory=True)
    (data / "benign" / "more").symlink_to(elsewhere / "benign_more", target_is_directory=True)
    (data / "benign" / "linked.png").symlink_to(elsewhere / "single.png")
    (data / "benign" / "loop").symlink_to(data / "benign", target_is_directory=True)  # benign/loop/loop/...
    (data / "malignant_again").symlink_to(elsewhere / "malignant", target_is_directory=True)

    result = {}
    reader = threading.Thread(target=lambda: result.update(data=load_image_folder(data)), daemon=True)
    reader.start()
    reader.join(120)
    assert not reader.is_alive(), "reading a folder with a symlink loop hangs"
    loaded = result["data"]
    ids = loaded.sample_ids.tolist()
    benign = [i for i in ids if i.startswith("benign/")]
    assert sorted(benign) == sorted(
        ["benign/0.png", "benign/1.png", "benign/2.png", "benign/linked.png"]
        + [f"benign/more/{i}.png" for i in range(3)]
    )
    assert loaded.class_names == ("benign", "malignant", "malignant_again")
    assert loaded.class_counts == {"benign": 7, "malignant": 3, "malignant_again": 3}


def test_data_dot_from_inside_the_image_folder_does_not_read_the_reports_as_a_class(
    tmp_path, capsys, monkeypatch
):
    """Item 18: the second `--data .` run read reports/ (its run store and figures) as a class."""
    for i in range(12):
        _grey(tmp_path / "benign" / f"{i}.png", i)
        _grey(tmp_path / "malignant" / f"{i}.png", 100 + i)
    monkeypatch.chdir(tmp_path)
    command = _evaluate(".", "--report", "md", "--jobs", "1", "--val-fraction", "0.2")
    assert main(command) == 0
    assert any((tmp_path / "reports").glob("*/cvkit.sqlite"))
    assert any((tmp_path / "reports").rglob("*.png")), "the first run leaves figures (images) in reports/"
    capsys.readouterr()
    assert main(command) == 0
    captured = capsys.readouterr()
    assert "0 jobs trained, 2 resumed from this run" in captured.out, captured.out + captured.err
    assert "reports: skipped, not a class" in captured.err
    in_folder = _evaluate(".", "--report", "none", "--jobs", "1", "--val-fraction", "0.2", "--out", "run1")
    assert main(in_folder) == 0 and main(in_folder) == 0  # a run folder inside the data, resumed
    captured = capsys.readouterr()
    assert "run1: skipped, not a class" in captured.err
    assert "0 jobs trained, 2 resumed from this run" in captured.out
