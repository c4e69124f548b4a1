"""cvkit: does this variant actually beat the baseline on this small data set, and how sure are we?"""

__version__ = "0.1.0"

from .api import evaluate, verify  # noqa: E402
from .comparison import compare  # noqa: E402
from .errors import CvkitError  # noqa: E402
from .results import Results, load  # noqa: E402

__all__ = ["CvkitError", "Results", "__version__", "compare", "evaluate", "load", "verify"]
