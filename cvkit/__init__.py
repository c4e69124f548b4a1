"""cvkit: does this variant actually beat the baseline on this small data set, and how sure are we?"""

from ._version import __version__
from .api import evaluate, verify
from .comparison import compare
from .errors import CvkitError
from .results import Results, load

__all__ = ["CvkitError", "Results", "__version__", "compare", "evaluate", "load", "verify"]
