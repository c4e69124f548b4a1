"""How numbers are written, the same in the terminal and in every document (metric names:
``cvkit.stats.metric_label``)."""

from __future__ import annotations

import math


def is_number(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def number(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if is_number(x) else "–"


def signed(x) -> str:
    return f"{x:+.3f}" if is_number(x) else "–"


def pvalue(p) -> str:
    if not is_number(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 fold``, ``2 folds``: a count with its noun in the right number."""
    return f"{n} {word if n == 1 else words or word + 's'}"
