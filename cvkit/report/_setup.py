"""How a run's data were used, in words the terminal and every document share: which parts were
pooled, the grouping, the duplicates found, and the caveats the run raised."""

from __future__ import annotations


def data_use(run: dict) -> list[tuple[str, str]]:
    """``(label, text)`` rows for the set-up: parts, grouping and duplicates (those the run recorded)."""
    data, holdout = run["data"], run.get("holdout")
    rows = []
    if data.get("parts"):
        text = f"{'+'.join(data['parts'])} pooled for cross-validation"
        if holdout and holdout.get("part"):
            text += f"; {holdout['part']} held out ({holdout['n_samples']} samples, never in any fold)"
        rows.append(("parts", text))
    if "grouping" in data:
        grouping = data["grouping"]
        rows.append(
            (
                "grouping",
                "none: samples are assigned to folds one by one"
                if grouping is None
                else f"by {grouping['column'] or 'the group ids given'} ({grouping['n_groups']} groups): "
                "no group is split between training and test",
            )
        )
    if "duplicates" in data:
        rows.append(("duplicates", duplicates_text(data["duplicates"], holdout)))
    return rows


def duplicates_text(found: dict, holdout) -> str:
    parts = [
        f"{found['pairs']} pair(s) in the cross-validation data ({found['exact']} exact), "
        f"{found.get('split_by_folds', 0)} split between training and test"
        if found["pairs"]
        else "none in the cross-validation data"
    ]
    if holdout is not None:
        parts.append(
            f"{found['holdout_pairs']} pair(s) across the hold-out boundary"
            if found["holdout_pairs"]
            else "none across the hold-out boundary"
        )
    parts.append(
        f"--dedupe dropped {found['dropped']} image(s), kept one of each"
        if found["dedupe"]
        else "--dedupe not used"
    )
    return "; ".join(parts)


def holdout_heading(holdout_scores: list[dict]) -> str:
    """``Hold-out set (N samples, never in any fold; K near-duplicates of CV images)``."""
    first = holdout_scores[0]
    copies = first.get("cv_duplicates")
    if copies is None:  # a run made before duplicates were looked for across the boundary
        return f"Hold-out set ({first['n']} samples, never in any fold)"
    return f"Hold-out set ({first['n']} samples, never in any fold; {copies} near-duplicates of CV images)"
