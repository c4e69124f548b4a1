"""Splits stage: the cross-validation plan shared by every model of a run."""

from ._design import Design
from ._plan import Split, SplitPlan, make_plan

__all__ = ["Design", "Split", "SplitPlan", "make_plan"]
