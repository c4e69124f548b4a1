"""Machine-readable exports of a run, for re-analysis elsewhere (R's pROC, a spreadsheet)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import CvkitError


def write_predictions_csv(results, path) -> int:
    """One row per (model, repeat, fold, seed, sample_id): true label and each class's probability.
    Returns the number of rows written."""
    frame = results.predictions.drop(columns=["sample_idx", "rule"])
    frame = frame.rename(columns={"label": "label_index", "label_name": "label"})
    _write(path, lambda f: frame.to_csv(f, index=False, float_format="%.10g"))
    return len(frame)


def write_json(results, path) -> None:
    _write(path, lambda f: json.dump(results.to_json(), f, indent=1, allow_nan=False))


def _write(path, write) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            write(f)
    except OSError as exc:
        raise CvkitError(f"{path}: cannot write ({exc.strerror}); choose a writable path") from None
