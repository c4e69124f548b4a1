"""The verdict sentence of a comparison, and the names its numbers go by. ``compare`` writes the
sentence into each ``Comparison`` (the frozen result carries its own reading); the reports print
it as is and name intervals and tests the same way, importing them from here: the flow runs one
way, comparison -> report."""

from __future__ import annotations

import math

from .stats import metric_label

LEADS = {
    "better": "{v} reliably beats {b}",
    "better, but negligible": "{v} is better than {b}, but negligibly: the whole interval lies inside "
    "the ROPE ±{rope:g} {name}",
    "worse": "{v} is reliably worse than {b}",
    "worse, but negligible": "{v} is worse than {b}, but negligibly: the whole interval lies inside "
    "the ROPE ±{rope:g} {name}",
    "equivalent": "{v} and {b} are practically equivalent (within ±{rope:g} {name})",
    "inconclusive": "{v} does not reliably beat {b}",
}


def confidence_text(confidence: float) -> str:
    """95%, 97.5%, 98.33%: as few digits as say the level exactly enough."""
    percent = 100 * confidence
    for digits in range(3):
        if abs(round(percent, digits) - percent) < 1e-9:
            return f"{percent:.{digits}f}%"
    return f"{percent:.2f}%"


def interval_label(c) -> str:
    """The name of a comparison's printed interval, saying its level and why."""
    if c.family_size <= 1:
        return f"{confidence_text(c.confidence)} CI"
    return f"{confidence_text(c.confidence)} CI (Holm step, {c.family_size} variants)"


# The verdict test's name in a sentence, by ``stats.verdict_test``'s method.
TEST_NAMES = dict(
    sampling_within="sampling-within test",
    corrected_t="corrected resampled t",
)


def verdict_paragraph(c, noise, n_folds: int, n_repeats: int) -> str:
    """The verdict sentence of one comparison, with its numbers and what they estimate; for a
    sequential run, where it stopped and why."""
    text = _fixed_paragraph(c, noise, n_folds, n_repeats)
    if c.sequential:
        text += " " + sequential_sentence(c, n_repeats)
    return text


def _fixed_paragraph(c, noise, n_folds: int, n_repeats: int) -> str:
    """The verdict sentence of one comparison, with its numbers and what they estimate."""
    name = metric_label(c.metric)
    t = c.ttest
    lead = LEADS[c.verdict].format(v=c.variant, b=c.baseline, rope=c.rope, name=name)
    adjusted = not (math.isnan(c.pvalue_holm) or c.pvalue_holm == t.pvalue)
    holm = f", Holm-adjusted {c.pvalue_holm:.2g}" if adjusted else ""
    parts = [
        f"{lead}: Δ{name} = {t.mean:+.3f} (mean of per-fold differences), {interval_label(c)} "
        f"[{t.low:+.3f}, {t.high:+.3f}], p = {t.pvalue:.2g} ({TEST_NAMES[t.method]}{holm})",
        f"it won {c.wins} of {len(c.diffs)} folds",
    ]
    if c.verdict in ("better", "worse") and abs(t.mean) <= c.rope:
        parts.append(f"the estimate lies inside the ROPE ±{c.rope:g}: the gain may be negligible")
    if noise is not None:
        parts.append(f"seed noise alone moves {name} by ±{2 * noise.seed_sd:.3f}")
    parts.append(
        f"this design detects a true difference of {c.mde:.3f} with 80% power (projected)"
        if math.isfinite(c.mde)
        else "no true difference reaches 80% power with this design (projected)"
    )
    parts.append(f"it cannot confirm equivalence within a ROPE narrower than ±{c.smallest_rope:.3f}")
    text = "; ".join(parts) + "."
    if c.verdict == "inconclusive":
        text += " " + c.advice.sentence
    return text


def sequential_sentence(c, max_repeats: int) -> str:
    """Where a sequential run stopped for this variant, why, and its repeated interval."""
    look = c.sequential[-1]
    where = f"after {look.repeats} of at most {max_repeats} repeats"
    reasons = dict(
        better=f"the test crossed the boundary (|z| {abs(look.z):.2f} >= {look.boundary:.2f})",
        worse=f"the test crossed the boundary (|z| {abs(look.z):.2f} >= {look.boundary:.2f})",
        equivalent="the repeated interval lies inside the ROPE",
        futile=f"futility: {100 * look.conditional_power:.0f}% conditional power to reach the boundary for "
        "the smallest effect of interest",
        inconclusive=(
            "the maximum was reached"
            if look.repeats >= max_repeats
            else "the information planned for the maximum was already reached"
        )
        + f" without crossing the boundary (|z| {abs(look.z):.2f} < {look.boundary:.2f})",
    )
    if look.decision == "continue":
        head = f"Sequential design: still running, {look.repeats} of at most {max_repeats} repeats so far"
    else:
        head = f"Sequential design: stopped {where}, {reasons[look.decision]}"
    return (
        f"{head}; Δ {look.estimate:+.3f}, repeated 95% interval [{look.low:+.3f}, {look.high:+.3f}] (it "
        "holds at every look at once; the interval and p above are the fixed-design ones and ignore "
        "the looks)."
    )
