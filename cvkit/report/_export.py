"""Machine-readable exports of a run, for re-analysis elsewhere (R's pROC, a spreadsheet)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pandas.api.types import is_numeric_dtype

from .. import escape, files
from ..errors import CvkitError


def write_predictions_csv(results, path, *, model: str | None = None) -> int:
    """One row per (model, repeat, fold, seed, sample_id): true label and each class's probability
    (of one ``model`` when given). Returns the number of rows written."""
    check_not_store(results.run_dir, path)
    frame = results.predictions.drop(columns=["sample_idx", "rule"])
    if model is not None:
        frame = frame[frame["model"] == model]
    frame = _spreadsheet_safe(frame)
    # RFC 4180's CRLF line ends: a cell holding a bare carriage return is then quoted, not split.
    _write(path, lambda f: frame.to_csv(f, index=False, float_format="%.10g", lineterminator="\r\n"))
    return len(frame)


def _spreadsheet_safe(frame):
    """Text cells and headers (model, class and sample names) that a spreadsheet would run as a
    formula, neutralised; numbers untouched."""
    text = [column for column in frame.columns if not is_numeric_dtype(frame[column])]
    frame = frame.assign(**{column: frame[column].map(escape.csv_cell) for column in text})
    return frame.rename(columns=escape.csv_cell)


def write_json(results, path, comparison=None) -> None:
    """The run's per-fold metrics and, when given, every test, interval and verdict of ``comparison``."""
    from ._serialise import report_record

    check_not_store(results.run_dir, path)
    summary = results.to_json()
    if comparison is not None:
        summary["comparison"] = report_record(comparison)
        summary["caveats"] += comparison.warnings  # every caveat in one list, as the reports show them
    _write(path, lambda f: json.dump(_finite(summary), f, indent=1, allow_nan=False))


def write_ranking_json(ranking, path) -> None:
    """A ranking over data sets (``cvkit compare RUN_A RUN_B ...``) as JSON."""
    from ._serialise import ranking_record

    record = _finite(dict(ranking=ranking_record(ranking)))
    _write(path, lambda f: json.dump(record, f, indent=1, allow_nan=False))


def write_plan_json(plan, path, grid=None) -> None:
    """A design plan (``cvkit plan``) as JSON.

    The record is ``plan_record``'s under the key ``plan``, NaN and infinity written as null; the
    file is replaced atomically (a failed write leaves the old one) and its folder created.

    Parameters
    ----------
    plan : DesignPlan
        The plan (``cvkit.planning.plan_from_run`` or ``plan_from_priors``).
    path : str or path
        The JSON file to write.
    grid : GridPower or None, default=None
        A recipe grid's projected power (``cvkit.planning.grid_power``), recorded under the plan's
        ``grid``; None: no grid.

    Raises
    ------
    CvkitError
        A path that cannot be written.
    """
    from ._serialise import plan_record

    record = _finite(dict(plan=plan_record(plan, grid)))
    _write(path, lambda f: json.dump(record, f, indent=1, allow_nan=False))


def _finite(value):
    """JSON has no NaN or infinity: write null instead."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _finite(value.item())
    return value


def _write(path, write) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with files.atomic_write(path, "w", newline="") as f:
            write(f)
    except OSError as exc:
        raise CvkitError(f"{path}: cannot write ({exc.strerror}); choose a writable path") from None


def check_not_store(run_dir, path) -> None:
    """An output path that names the SQLite store of the run in ``run_dir`` or one of its side files
    would destroy it."""
    store = Path(run_dir) / files.STORE_NAME
    side_files = [store.with_name(store.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    files.check_output_path(path, side_files, "the run's store")
