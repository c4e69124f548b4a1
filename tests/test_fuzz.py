"""Property-based tests: random valid inputs never crash the loaders or the statistics, and
random invalid inputs get the documented error (``DataError`` for data, ``ValueError`` for the
statistics), never anything else."""

import csv
import io
import math
import re
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from cvkit.data import load_medmnist
from cvkit.data._loaders import load_manifest
from cvkit.errors import DataError
from cvkit.stats import bootstrap_diff, corrected_ttest, delong, mcnemar

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PARTS = ("train", "val", "test")


@st.composite
def medmnist_arrays(draw):
    """The arrays of a binary MedMNIST archive: grey (N, H, W) or colour (N, H, W, 3) uint8 images
    and (N, 1) labels, per official part."""
    height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    colour = draw(st.booleans())
    out = {}
    for part in PARTS:
        n = draw(st.integers(1, 6))
        shape = (n, height, width, 3) if colour else (n, height, width)
        out[f"{part}_images"] = draw(arrays(np.uint8, shape))
        out[f"{part}_labels"] = draw(arrays(np.int64, (n, 1), elements=st.integers(0, 1)))
    return out


@FUZZ
@given(archive=medmnist_arrays())
def test_valid_medmnist_archives_load(tmp_path, archive):
    path = tmp_path / "fuzzmnist.npz"
    np.savez(path, **archive)
    data = load_medmnist(path)
    n = sum(len(archive[f"{p}_labels"]) for p in PARTS)
    assert data.images.shape[0] == len(data.labels) == len(data.sample_ids) == n
    assert data.images.dtype == np.uint8 and data.images.shape[1] in (1, 3)
    assert data.labels.tolist() == np.concatenate([archive[f"{p}_labels"] for p in PARTS]).ravel().tolist()


@FUZZ
@given(
    archive=medmnist_arrays(),
    damage=st.sampled_from(["drop", "labels", "multilabel", "truncate", "empty"]),
    part=st.sampled_from(PARTS),
)
def test_broken_medmnist_archives_give_a_data_error(tmp_path, archive, damage, part):
    path = tmp_path / "fuzzmnist.npz"
    if damage == "drop":
        del archive[f"{part}_images"]
    elif damage == "labels":
        archive[f"{part}_labels"] = np.concatenate([archive[f"{part}_labels"]] * 2)
    elif damage == "multilabel":
        archive[f"{part}_labels"] = np.zeros((len(archive[f"{part}_labels"]), 3), np.int64)
    np.savez(path, **archive)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    elif damage == "empty":
        path.write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(str(path))):
        load_medmnist(path)


labels = (
    st.text(string.ascii_letters + string.digits + " _-", min_size=1, max_size=8).map(str.strip).filter(bool)
)
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.just(""),
    st.integers(-(10**6), 10**6).map(str),
)


@st.composite
def manifests(draw):
    n = draw(st.integers(1, 12))
    names = draw(st.lists(labels, min_size=1, max_size=3, unique=True))
    rows = [
        dict(
            image=f"img/{i % 3}.png", sample_id=f"s{i}", label=draw(st.sampled_from(names)), age=draw(numbers)
        )
        for i in range(n)
    ]
    return rows


def _write_manifest(folder, rows, columns=("image", "sample_id", "label", "age")):
    (folder / "img").mkdir(exist_ok=True)
    for i in range(3):
        Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(folder / "img" / f"{i}.png")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (folder / "m.csv").write_text(text.getvalue())
    return folder / "m.csv"


@FUZZ
@given(rows=manifests())
def test_valid_manifests_load(tmp_path, rows):
    data = load_manifest(_write_manifest(tmp_path, rows))
    assert len(data) == len(rows)
    assert [data.class_names[i] for i in data.labels] == [r["label"] for r in rows]
    ages = [float(r["age"]) if r["age"] else math.nan for r in rows]
    np.testing.assert_array_equal(data.extra[:, 0], np.array(ages))


@FUZZ
@given(
    rows=manifests(),
    damage=st.sampled_from(["text", "inf", "no label", "duplicate id", "missing image", "drop column"]),
    where=st.integers(0, 11),
)
def test_broken_manifests_give_a_data_error_naming_the_file(tmp_path, rows, damage, where):
    row = rows[where % len(rows)]
    columns = ("image", "sample_id", "label", "age")
    if damage == "text":
        row["age"] = "about 40"
    elif damage == "inf":
        row["age"] = "inf"
    elif damage == "no label":
        row["label"] = ""
    elif damage == "duplicate id":
        assume(len(rows) > 1)
        rows[(where + 1) % len(rows)]["sample_id"] = row["sample_id"]
    elif damage == "missing image":
        row["image"] = "img/none.png"
    else:
        columns = ("image", "sample_id", "age")
    path = _write_manifest(tmp_path, rows, columns)
    with pytest.raises(DataError, match=re.escape(str(path))):
        load_manifest(path)


scores = st.floats(0, 1, allow_nan=False)


@FUZZ
@given(
    diffs=st.lists(st.floats(-1, 1, allow_nan=False), min_size=2, max_size=50),
    n_train=st.integers(1, 10_000),
    n_test=st.integers(1, 10_000),
)
def test_corrected_ttest_on_any_valid_differences(diffs, n_train, n_test):
    result = corrected_ttest(diffs, n_train, n_test)
    assert 0 <= result.pvalue <= 1
    assert result.low <= result.mean <= result.high or result.se == 0


@FUZZ
@given(diffs=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=10))
def test_corrected_ttest_rejects_invalid_differences_with_value_error(diffs):
    assume(len(diffs) < 2 or not np.isfinite(diffs).all())
    with pytest.raises(ValueError):
        corrected_ttest(diffs, 80, 20)


@st.composite
def paired_scores(draw, min_each=1):
    n = draw(st.integers(2 * min_each, 40))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    assume(min_each <= y.sum() <= n - min_each)
    a = np.array(draw(st.lists(scores, min_size=n, max_size=n)))
    b = np.array(draw(st.lists(scores, min_size=n, max_size=n)))
    return y, a, b


@FUZZ
@given(data=paired_scores(min_each=2))
def test_mcnemar_and_delong_on_any_valid_predictions(data):
    y, a, b = data
    for method in ("midp", "exact", "chi2"):
        assert 0 <= mcnemar(y, a >= 0.5, b >= 0.5, method=method).pvalue <= 1
    result = delong(y, a, b)
    assert 0 <= result.auc_a <= 1 and 0 <= result.auc_b <= 1
    assert math.isclose(result.difference, result.auc_b - result.auc_a, abs_tol=1e-12)
    assert 0 <= result.pvalue <= 1


@FUZZ
@given(data=paired_scores(), method=st.sampled_from(["percentile", "bca"]))
def test_bootstrap_on_any_valid_predictions(data, method):
    y, a, b = data
    result = bootstrap_diff(y, a, b, n_resamples=200, method=method)
    assert result.low <= result.high
    assert -1 <= result.low and result.high <= 1


@FUZZ
@given(y=st.lists(st.integers(0, 3), min_size=1, max_size=20), data=st.data())
def test_sample_tests_reject_invalid_labels_with_value_error(y, data):
    y = np.array(y)
    assume(set(y.tolist()) - {0, 1} or len(set(y.tolist())) < 2)
    a = np.array(data.draw(st.lists(scores, min_size=len(y), max_size=len(y))))
    with pytest.raises(ValueError):
        delong(y, a, a)
    with pytest.raises(ValueError):
        bootstrap_diff(y, a, a, n_resamples=50)
