"""Extra per-image features: joined from a CSV by sample id, or computed from the images."""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import DataError
from ._dataset import Dataset

# A sample id column's accepted names, in order of preference, in a manifest and an extra-feature
# CSV alike: a file with both columns is keyed by the same one wherever it is read.
ID_COLUMNS = ("sample_id", "id")
HANDCRAFTED = (
    "mean",
    "std",
    "p10",
    "p90",
    "entropy",
    "dark_area",
    "dark_compactness",
    "glcm_contrast",
    "glcm_homogeneity",
    "glcm_energy",
    "glcm_correlation",
)


# Words that name a record rather than measure it: a column "Patient ID", "PatientNo" or "MRN" is an
# identifier, and as a feature it lets a model learn which patient, not what the image shows.
_ID_WORDS = {"id", "ids", "uid", "mrn", "patient", "subject", "participant", "accession", "record", "case"}


def id_like_columns(names) -> list[str]:
    """The column names that look like a patient or record identifier (``Patient ID``, ``PatientID``,
    ``subject_no``, ``MRN``), by their words; ``lipid`` or ``thyroid_size`` are not."""
    found = []
    for name in names:
        words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", str(name))
        if _ID_WORDS & {w.lower() for w in words}:
            found.append(name)
    return found


def warn_id_like(names, where, advice: str) -> None:
    """One warning per extra-feature column whose name looks like an identifier."""
    for name in id_like_columns(names):
        warnings.warn(
            f"{where}: column {name!r} looks like a patient/record id, yet it becomes a numeric "
            f"feature; {advice}",
            stacklevel=3,
        )


def with_extra(dataset: Dataset, spec: str | None) -> Dataset:
    """``spec`` is a CSV path (joined by sample id), ``handcrafted``, or None (keep the data set's own)."""
    if spec is None:
        return dataset
    if spec == "handcrafted":
        return handcrafted_features(dataset)
    return join_extra_csv(dataset, spec)


def join_extra_csv(dataset: Dataset, path) -> Dataset:
    """Replace the extra features by the numeric columns of a CSV with one row per sample id.
    Empty cells become NaN (to be imputed per training fold with --impute)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: no such extra-feature file; pass a CSV with a sample_id column, or 'handcrafted'"
        )
    columns, rows, lines = read_csv(path)
    id_column = next((c for c in ID_COLUMNS if c in columns), None)
    if id_column is None:
        raise DataError(
            f"{path}: no sample id column; name it one of {', '.join(ID_COLUMNS)} "
            f"(the data set's ids look like {str(dataset.sample_ids[0])!r})"
        )
    names = tuple(c for c in columns if c != id_column)
    warn_id_like(
        names,
        path,
        "an id is no feature: drop it from the CSV (to keep a patient's images in one fold, give "
        "them a group: the group or patient_id column of a CSV manifest)",
    )
    by_id = {}
    for line, row in zip(lines, rows):
        sample = row[id_column]
        if sample in by_id:
            raise DataError(f"{path}, row {line}: sample id {sample!r} appears twice")
        by_id[sample] = [feature_value(row[c], path, line, c) for c in names]
    missing = [s for s in dataset.sample_ids.tolist() if s not in by_id]
    if missing:
        raise DataError(
            f"{path}: no row for {len(missing)} sample(s) of {dataset.name}, e.g. {missing[0]!r}; "
            "every sample needs a row (leave cells empty for missing values)"
        )
    extra = np.array([by_id[s] for s in dataset.sample_ids.tolist()], dtype=np.float64).reshape(
        len(dataset), len(names)
    )
    return replace(dataset, extra=extra, extra_names=names)


def handcrafted_features(dataset: Dataset) -> Dataset:
    """Intensity, shape and texture features of each image (first channel), computed per image
    with no fitting, so no information crosses between folds: intensity mean, sd, 10th and 90th
    percentiles and histogram entropy; area and compactness of the dark region below Otsu's
    threshold; grey-level co-occurrence contrast, homogeneity, energy and correlation."""
    from skimage.feature import graycomatrix, graycoprops
    from skimage.filters import threshold_otsu
    from skimage.measure import perimeter

    features = np.empty((len(dataset), len(HANDCRAFTED)))
    for i, image in enumerate(dataset.images[:, 0]):
        values = image.astype(np.float64)
        histogram = np.bincount(image.ravel(), minlength=256) / image.size
        nonzero = histogram[histogram > 0]
        dark = values < (threshold_otsu(image) if image.min() != image.max() else values.mean() + 1)
        area = dark.mean()
        compactness = 4 * np.pi * dark.sum() / max(perimeter(dark) ** 2, 1.0)
        glcm = graycomatrix(
            image // 8, distances=[1], angles=[0, np.pi / 2], levels=32, symmetric=True, normed=True
        )
        texture = [
            graycoprops(glcm, prop).mean() for prop in ("contrast", "homogeneity", "energy", "correlation")
        ]
        features[i] = [
            values.mean(),
            values.std(),
            *np.percentile(values, [10, 90]),
            -(nonzero * np.log2(nonzero)).sum(),
            area,
            compactness,
            *texture,
        ]
    features = np.nan_to_num(features, nan=0.0)  # correlation of a flat image is undefined
    return replace(dataset, extra=features, extra_names=HANDCRAFTED)


def check_missing(dataset: Dataset, impute: str) -> None:
    """Missing extra values need an imputation rule; say which column and how many."""
    if dataset.extra is None or impute != "none":
        return
    missing = np.isnan(dataset.extra).sum(axis=0)
    if missing.any():
        column = int(np.argmax(missing > 0))
        raise DataError(
            f"extra feature column {dataset.extra_names[column]!r} has {missing[column]} missing "
            "value(s); pass --impute mean or --impute median (fitted on each training fold), "
            "or fill them in"
        )


def read_csv(path) -> tuple[list[str], list[dict], list[int]]:
    """(columns, rows, line numbers) of a UTF-8 CSV file, or a ``DataError`` naming the file.

    A row's number is its line in the file, blank lines counted (a row whose quoted cell holds a
    line break is numbered by its last line), so that an error message points at the line an
    editor shows. A row with fewer cells than the header has empty strings for the missing ones.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows, lines = [], []
            for row in reader:
                rows.append({column: "" if value is None else value for column, value in row.items()})
                lines.append(reader.line_num)
            return columns, rows, lines
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file (not UTF-8); save it as CSV (UTF-8)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None


def feature_value(text, path, line, column) -> float:
    """The number in a CSV cell of an extra-feature column (NaN for an empty cell, ``nan`` or
    ``na``), or a ``DataError`` naming the file, row and column."""
    text = (text or "").strip()
    if text == "" or text.lower() in ("nan", "na"):
        return np.nan
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{path}, row {line}: column {column!r} holds {text!r}, not a number; "
            "extra feature columns must be numeric"
        ) from None
    if not np.isfinite(value):
        raise DataError(
            f"{path}, row {line}: column {column!r} holds {text!r}; use an empty cell for a missing value"
        )
    return value
