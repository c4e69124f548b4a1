"""Issue 22, the data layer: inputs a hostile but realistic user gives that the first hardening
round missed. Each test reproduces one way cvkit read data wrongly or crashed, and holds the fix."""

import sys
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


# -- images of more than 8 bits: 16-bit and float PNG/TIFF, DICOM (item 1) ----------------------

N_PER_CLASS = 20


def _signal_images(seed=0):
    """(image, label) pairs of 16 x 16 16-bit values, all above 255: a noisy background around
    31000, and in class 1 a bright 6 x 6 square (+16000) in the middle. ``convert("L")`` clips
    every pixel to 255: all images alike, AUC 0.5."""
    rng = np.random.default_rng(seed)
    for i in range(2 * N_PER_CLASS):
        label = i % 2
        values = rng.integers(29000, 33000, (16, 16)).astype(np.float64)
        if label:
            values[5:11, 5:11] += 16000
        yield values, label


def _write_dicom(path, stored, *, slope=1.0, intercept=-1024.0, window=(40.0, 400.0), frames=1):
    """A CT-like single-frame DICOM file written with pydicom (stored uint16, MONOCHROME2)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    stored = np.asarray(stored, dtype=np.uint16)
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = stored.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)  # pydicom 3
    except TypeError:
        ds.is_little_endian, ds.is_implicit_VR = True, False  # pydicom 2
        pydicom.dcmwrite(path, ds, write_like_original=False)


def _write_set(folder, kind):
    for i, (values, label) in enumerate(_signal_images()):
        path = folder / ("bright" if label else "plain") / f"{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "png16":
            Image.fromarray(values.astype(np.uint16)).save(path.with_suffix(".png"))
        elif kind == "tiff-float":  # the same signal in float units, partly negative
            Image.fromarray((values / 1000 - 31).astype(np.float32)).save(path.with_suffix(".tif"))
        else:  # CT: HU = stored - 1024; background 20..60 HU, the square +150 HU, window 40/400
            _write_dicom(path.with_suffix(".dcm"), (values - 29000) / 100 + 1044 + (values > 40000) * 100)


@pytest.mark.filterwarnings("ignore:.*near-identical")  # the images differ only by their noise
@pytest.mark.parametrize("kind", ["png16", "tiff-float", "dicom"])
def test_images_of_more_than_8_bits_keep_their_signal(tmp_path, kind):
    """Item 1: forty 16-bit PNGs with a clear class signal were all exact duplicates (AUC 0.5);
    float TIFFs clipped alike; DICOM could not be read at all."""
    from cvkit import evaluate
    from cvkit.data import find_duplicates, load_data

    _write_set(tmp_path / "data", kind)
    results = evaluate(
        data=str(tmp_path / "data"), baseline="logreg", folds=2, repeats=1, out=tmp_path / "run", jobs=1
    )
    auc = results.metrics.query("model == 'logreg'")["auc"]
    assert auc.min() > 0.8, auc.tolist()
    data = load_data(str(tmp_path / "data"))
    assert not [pair for pair in find_duplicates(data.images) if pair.exact]
    assert data.intensity and data.intensity in data.description
    assert results.run["data"]["intensity"] == data.intensity


def test_the_scaling_rule(tmp_path):
    """Per-image min-max by default, a fixed window when given, values outside it clipped."""
    from cvkit.data import load_image_folder, to_8bit

    ramp = np.array([[0, 1000, 2000, 3000]], dtype=np.float64)
    assert to_8bit(ramp).tolist() == [[0, 85, 170, 255]]
    assert to_8bit(ramp, (1000, 2000)).tolist() == [[0, 0, 255, 255]]
    assert to_8bit(ramp, (0, 6000)).tolist() == [[0, 42, 85, 128]]
    assert to_8bit(np.full((2, 2), 7.0)).tolist() == [[0, 0], [0, 0]]  # a flat image: 0

    raw = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000 + 300
    for name in ("plain", "bright"):
        (tmp_path / name).mkdir()
        Image.fromarray(raw).save(tmp_path / name / "a.png")
        Image.fromarray(raw[::-1].copy()).save(tmp_path / name / "b.png")
    by_minmax = load_image_folder(tmp_path)
    assert by_minmax.images[0, 0].tolist() == to_8bit(raw).tolist()
    assert by_minmax.intensity == "16-bit/32-bit/float images scaled to 8-bit by per-image min-max"
    by_window = load_image_folder(tmp_path, intensity_window=(10000, 40000))
    assert by_window.images[0, 0].tolist() == to_8bit(raw, (10000, 40000)).tolist()
    assert by_window.intensity == "intensity window [10000, 40000] -> 0..255"
    assert by_window.fingerprint != by_minmax.fingerprint


def test_dicom_rescale_and_its_own_window(tmp_path):
    """Stored -> slope * x + intercept (HU), then the file's WindowCenter/Width (DICOM's linear
    function), else per-image min-max."""
    from cvkit.data import load_image_folder

    stored = np.array([[0, 432, 1024, 1064, 1264, 4000]], dtype=np.uint16)  # HU -1024 .. 2976
    _write_dicom(tmp_path / "a" / "x.dcm", stored)  # window 40 / 400: HU -160 -> 0, 239 -> 255
    _write_dicom(tmp_path / "b" / "y.dcm", stored // 2, slope=2.0)  # the same HU, stored halved
    _write_dicom(tmp_path / "c" / "z.dcm", stored, window=None)
    data = load_image_folder(tmp_path)
    hu = stored.astype(np.float64) - 1024
    expected = np.clip(np.rint(((hu - 39.5) / 399 + 0.5) * 255), 0, 255)
    assert data.images[0, 0].tolist() == expected.tolist() == data.images[1, 0].tolist()
    assert data.images[2, 0].tolist() == np.rint((hu - hu.min()) / np.ptp(hu) * 255).tolist()
    assert data.images[0, 0, 0, 3] == 128  # HU 40, the window's centre, is mid-grey
    assert data.intensity.startswith("DICOM: rescale slope/intercept")


def _refused(tmp_path, capsys, monkeypatch, *options):
    monkeypatch.chdir(tmp_path)
    assert main(_evaluate(tmp_path / "data", *options)) == 2
    return _one_error(capsys)


def test_what_cannot_be_read_faithfully_is_refused_naming_the_file(tmp_path, capsys, monkeypatch):
    _write_set(tmp_path / "data", "png16")
    frames = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "data" / "plain" / "stack.tif", save_all=True, append_images=frames[1:])
    line = _refused(tmp_path, capsys, monkeypatch)
    assert "plain/stack.tif: a multi-frame image (2 frames)" in line
    (tmp_path / "data" / "plain" / "stack.tif").unlink()

    _write_dicom(tmp_path / "data" / "plain" / "cine.dcm", np.zeros((2, 16, 16)), frames=2)
    assert "plain/cine.dcm: a multi-frame DICOM (2 frames)" in _refused(tmp_path, capsys, monkeypatch)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # pydicom not installed
    line = _refused(tmp_path, capsys, monkeypatch)
    assert line.endswith('plain/cine.dcm: reading DICOM needs pydicom: pip install -e ".[dicom]"'), line
    monkeypatch.delitem(sys.modules, "pydicom")
    (tmp_path / "data" / "plain" / "cine.dcm").unlink()

    nan = np.full((16, 16), np.nan, dtype=np.float32)
    Image.fromarray(nan).save(tmp_path / "data" / "plain" / "nan.tif")
    assert "plain/nan.tif: the image holds NaN or infinite values" in _refused(tmp_path, capsys, monkeypatch)
    (tmp_path / "data" / "plain" / "nan.tif").unlink()
    line = _refused(tmp_path, capsys, monkeypatch, "--intensity-window", "5", "5")
    assert "--intensity-window 5 5: LOW and HIGH must be finite numbers with LOW < HIGH" in line


def test_the_intensity_window_is_part_of_the_job_key(tmp_path, capsys, monkeypatch):
    """Another rule gives other pixels and other predictions: never the old run's jobs."""
    _write_set(tmp_path / "data", "png16")
    monkeypatch.chdir(tmp_path)
    command = _evaluate(tmp_path / "data", "--baseline", "logreg", "--out", "run", "--report", "none")
    assert main(command) == 0
    window = ["--intensity-window", "29000", "50000"]
    line = _refused(tmp_path, capsys, monkeypatch, "--baseline", "logreg", "--out", "run", *window)
    assert "holds a run with other settings (different data" in line


# -- few positives: validation parts, checkpoint fallback; --dedupe with conflicting labels (item 8)


def test_validation_parts_hold_every_class_when_they_can():
    """3 positives in a training part of 30 and 10% held out: stratification rounded the
    positives of the validation part down to none, and val_auc had nothing to choose by."""
    y = np.zeros(60, dtype=np.int64)
    y[[0, 1, 2, 3, 4, 5]] = 1
    for split in make_plan(y, 2, 3, seed=0, val_fraction=0.1):
        assert set(y[split.val]) == {0, 1}, f"repeat {split.repeat} fold {split.fold}"
        assert set(y[split.train]) == {0, 1}
        assert len(split.val) == 3  # the part keeps its size
    groups = np.repeat(np.arange(30), 2)  # 30 patients of two images, 4 of them positive
    y = (groups < 4).astype(np.int64)
    for split in make_plan(y, 2, 3, seed=0, val_fraction=0.1, groups=groups):
        assert set(y[split.val]) == {0, 1} and set(y[split.train]) == {0, 1}
        assert not set(groups[split.val]) & set(groups[split.train])


def test_a_validation_part_without_a_class_is_said_and_recorded_per_job(tiny, tmp_path):
    """With the positives in two patients, each training part holds one positive patient: it
    cannot be in both training and validation. The fallback is warned, kept with each job and
    in the report's warnings, not hidden behind "checkpoint by val_auc"."""
    import dataclasses
    import json

    import cvkit
    from cvkit.comparison import compare

    data = tiny.subset(np.arange(40))
    groups = np.repeat(np.array([f"p{k}" for k in range(20)]), 2)
    labels = (np.arange(40) < 4).astype(np.int64)  # patients p0 and p1
    data = dataclasses.replace(data, labels=labels, groups=groups, positive=1)
    with pytest.warns(UserWarning, match=r"validation part \(repeat 0, fold 0\) has no sample of"):
        results = cvkit.evaluate(
            [], data=data, folds=2, repeats=1, epochs=2, val_fraction=0.2, out=tmp_path / "run", jobs=1
        )
    infos = [json.loads(job["info"]) for job in results.jobs]
    assert all(info["checkpoint_fallback"] == {"val_auc": "last"} for info in infos), infos
    assert all(job["selected_epoch"] == 2 for job in results.jobs)
    report = compare(results)
    assert (
        "checkpoint by val_auc: in 2 of 2 jobs the validation part lacked a class, so val_auc was "
        "undefined and the last epoch's model was used instead" in report.warnings
    )


def test_dedupe_names_identical_images_with_conflicting_labels(tmp_path, capsys, monkeypatch):
    """--dedupe kept one of two identical images labelled benign and malignant, without a word."""
    from cvkit.results import Results

    for i in range(12):
        _grey(tmp_path / "data" / "benign" / f"{i}.png", i)
        _grey(tmp_path / "data" / "malignant" / f"{i}.png", 100 + i)
    folder = tmp_path / "data"
    (folder / "malignant" / "copy.png").write_bytes((folder / "benign" / "3.png").read_bytes())
    (folder / "benign" / "again.png").write_bytes((folder / "benign" / "5.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    command = _evaluate(folder, "--dedupe", "--baseline", "logreg", "--out", "run", "--report", "none")
    assert main(command) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("cvkit: warning: --dedupe")]
    same = "cvkit: warning: --dedupe: dropped 1 duplicate image(s) of the same label, kept one of each"
    assert same in warnings
    conflict = [line for line in warnings if "different labels" in line]
    assert len(conflict) == 1, err
    assert "every copy was dropped" in conflict[0]
    assert conflict[0].endswith("benign/3.png (benign) = malignant/copy.png (malignant)")
    kept = set(Results(tmp_path / "run").sample_ids)
    assert len(kept) == 26 - 3
    assert not kept & {"benign/3.png", "malignant/copy.png"}
    assert len(kept & {"benign/5.png", "benign/again.png"}) == 1


def test_the_intensity_window_in_the_api(tmp_path, tiny):
    import cvkit
    from cvkit.errors import ConfigError

    _write_set(tmp_path / "data", "png16")
    results = cvkit.evaluate(
        data=str(tmp_path / "data"),
        intensity_window=(29000, 50000),
        baseline="logreg",
        folds=2,
        repeats=1,
        out=tmp_path / "run",
        jobs=1,
    )
    assert results.run["data"]["intensity"] == "intensity window [29000, 50000] -> 0..255"
    assert results.metrics["auc"].min() > 0.8
    with pytest.raises(ConfigError, match="intensity_window applies when evaluate loads the data"):
        cvkit.evaluate(data=tiny, intensity_window=(0, 1), baseline="logreg", out=tmp_path / "other")
