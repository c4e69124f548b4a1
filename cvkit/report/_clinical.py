"""The clinical section of every report (calibration, net benefit, operating point), written once as
plain tables and a record: the terminal, HTML and Markdown show the tables, JSON the record.

Cells are pairs (value, interval): the terminal stacks them in two lines so that a table of four
metrics fits 80 columns; the documents put the interval beside the value. Row labels hold model
names (user strings): each renderer escapes them for where they go.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._json import nan_to_none
from ..stats import metric_label
from ._cases import cases_record
from ._format import is_number, number, pvalue, signed
from ._narrative import ESTIMANDS


@dataclass(frozen=True)
class ClinicalTable:
    key: str  # the HTML anchor
    title: str
    note: str  # what each number estimates
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (row label, ((value, interval), ...))


def clinical_notes(clinical) -> list[str]:
    """The plain sentences above the tables: class weighting, calibration flags, missing parts."""
    notes = []
    if clinical.recalibrated:
        notes.append(
            f"Probabilities recalibrated ({clinical.recalibrated}) by a map fitted on each job's validation "
            "predictions alone, then applied to its test fold: the calibration, net benefit and operating "
            "point below are those of the recalibrated probabilities; every other metric keeps the "
            "models' own."
        )
    if clinical.weighting_note:
        notes.append(clinical.weighting_note)
    for model, flags in clinical.calibration_flags.items():
        notes += [f"{model}: {flag}." for flag in flags]
    return notes + list(clinical.notes)


def clinical_tables(clinical) -> list[ClinicalTable]:
    tables = [
        _table(
            "calibration",
            f"Calibration of the predicted probability of {clinical.positive}",
            ESTIMANDS["calibration"],
            clinical.calibration,
            clinical.baseline,
        ),
        _table(
            "net-benefit",
            "Net benefit at the pre-declared thresholds (treat if the probability is at least t)",
            ESTIMANDS["net_benefit"],
            clinical.net_benefit,
            clinical.baseline,
            treat_all=_treat_all(clinical),
        ),
    ]
    for kind, table in clinical.per_class.items():
        name = metric_label(kind)
        tables.append(
            _table(
                f"per-class-{kind}",
                f"{name[0].upper()}{name[1:]} of each class against the rest (one-vs-rest), and their "
                "macro average",
                ESTIMANDS["per_class"],
                table,
                clinical.baseline,
            )
        )
    if clinical.operating is not None:
        tables.append(
            _table(
                "operating-point",
                f"Operating point {clinical.operating_rule}, chosen on each job's validation predictions",
                ESTIMANDS["operating_point"],
                clinical.operating,
                clinical.baseline,
                thresholds=clinical.thresholds,
            )
        )
    return tables


def _treat_all(clinical) -> tuple[str, tuple[tuple[str, str], ...]]:
    curve = clinical.decision
    cells = []
    for t in clinical.nb_thresholds:
        i = int(abs(curve.thresholds - t).argmin())
        cells.append((number(curve.treat_all[i]) if abs(curve.thresholds[i] - t) < 1e-9 else "–", ""))
    return "treat all", tuple(cells)


def _table(key, title, note, table, baseline, *, treat_all=None, thresholds=None) -> ClinicalTable:
    columns = tuple(table.labels[m] for m in table.metrics)
    rows = []
    for model, values in table.per_model.items():
        label = f"{model} (baseline)" if model == baseline else model
        cells = tuple(_interval(*values[m]) for m in table.metrics)
        if thresholds is not None:
            median, low, high = thresholds.get(model, (float("nan"),) * 3)
            cells += (
                (number(median, 2), f"(range {number(low, 2)}–{number(high, 2)})" if is_number(low) else ""),
            )
        rows.append((label, cells))
    if treat_all is not None:
        rows.append(treat_all)
    for variant, tests in table.differences.items():
        cells = tuple(_difference(tests[m]) for m in table.metrics)
        if thresholds is not None:
            cells += (("", ""),)
        rows.append((f"Δ {variant} - {baseline}", cells))
    if thresholds is not None:
        columns += ("threshold",)
    return ClinicalTable(key, title, f"Estimand: {note}", columns, tuple(rows))


def _interval(mean, low, high) -> tuple[str, str]:
    return number(mean), f"[{number(low)}, {number(high)}]" if is_number(low) else ""


def _difference(test) -> tuple[str, str]:
    if test is None:
        return "–", ""
    return signed(test.mean), f"[{signed(test.low)}, {signed(test.high)}] p {pvalue(test.pvalue)}"


def clinical_record(clinical) -> dict | None:
    """The clinical layer as plain values for JSON (NaN as null)."""
    if clinical is None:
        return None

    def metric_table(table):
        if table is None:
            return None
        return dict(
            per_model={
                model: {
                    m: dict(mean=nan_to_none(v[0]), ci_low=nan_to_none(v[1]), ci_high=nan_to_none(v[2]))
                    for m, v in values.items()
                }
                for model, values in table.per_model.items()
            },
            differences={
                variant: {
                    m: None
                    if t is None
                    else dict(
                        difference=nan_to_none(t.mean),
                        ci_low=nan_to_none(t.low),
                        ci_high=nan_to_none(t.high),
                        pvalue=nan_to_none(t.pvalue),
                        confidence=t.confidence,
                    )
                    for m, t in tests.items()
                }
                for variant, tests in table.differences.items()
            },
        )

    curve = clinical.decision

    def values(array):
        return [nan_to_none(float(x)) for x in array]

    return dict(
        positive=clinical.positive,
        baseline=clinical.baseline,
        calibration=metric_table(clinical.calibration),
        calibration_flags=clinical.calibration_flags,
        class_weighting_note=clinical.weighting_note,
        recalibrated=clinical.recalibrated,
        nb_thresholds=list(clinical.nb_thresholds),
        net_benefit=metric_table(clinical.net_benefit),
        decision_curve=dict(
            thresholds=values(curve.thresholds),
            treat_all=values(curve.treat_all),
            models={
                m: dict(mean=values(curve.mean[m]), low=values(curve.low[m]), high=values(curve.high[m]))
                for m in curve.mean
            },
        ),
        operating_rule=clinical.operating_rule,
        operating_point=metric_table(clinical.operating),
        per_class={kind: _per_class_record(metric_table(t), t) for kind, t in clinical.per_class.items()},
        thresholds={m: dict(median=t[0], min=t[1], max=t[2]) for m, t in clinical.thresholds.items()},
        notes=list(clinical.notes),
        cases=cases_record(getattr(clinical, "cases", None)),
        estimands={k: ESTIMANDS[k] for k in ("calibration", "net_benefit", "operating_point", "per_class")},
    )


def _per_class_record(record: dict, table) -> dict:
    """A per-class table's record keyed by class name ("macro average" for the mean over classes)."""

    def rename(by_metric):
        return {table.labels[m]: v for m, v in by_metric.items()}

    return dict(
        per_model={model: rename(v) for model, v in record["per_model"].items()},
        differences={variant: rename(v) for variant, v in record["differences"].items()},
    )
