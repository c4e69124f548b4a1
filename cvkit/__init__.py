"""cvkit: does this variant actually beat the baseline on this small data set, and how sure are we?"""

from ._version import __version__
from .api import evaluate, verify
from .comparison import compare
from .data import Data
from .errors import CvkitError, OptionError
from .multiverse import GridResults, analyse_grid
from .results import Results, load
from .runner import Execution
from .splits import Design
from .trainers import TrainConfig

__all__ = [
    "CvkitError",
    "Data",
    "Design",
    "Execution",
    "GridResults",
    "OptionError",
    "Results",
    "TrainConfig",
    "__version__",
    "analyse_grid",
    "compare",
    "evaluate",
    "load",
    "verify",
]
