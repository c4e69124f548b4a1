"""Numbers made ready for JSON records, which have no NaN."""

from __future__ import annotations

import math


def nan_to_none(x) -> float | None:
    """``x`` as a float, or None where it is missing: None or NaN (JSON's null)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x
