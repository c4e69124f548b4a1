"""``Data``: which data a run uses and how, one frozen object with its defaults."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import OptionError
from ._dataset import Dataset
from ._intensity import check_window
from ._loaders import check_image_size

# Options of loading a data set from its spec (a Dataset built in Python has been loaded already):
# field -> the load_data option it sets.
_LOADING = dict(
    image_size="image_size", intensity_window="intensity_window", demo_extra_signal="extra_signal"
)


@dataclass(frozen=True)
class Data:
    """The data of a run: where it comes from, its positive class, extra features, hold-out part
    and duplicates.

    Parameters
    ----------
    source : str, path or Dataset, default="demo"
        ``"demo"`` (a built-in synthetic set), a MedMNIST ``.npz``, an image folder or a CSV
        manifest (see :func:`load_data`), or a :class:`Dataset` loaded already.
    positive : str or None, default=None
        Name of the positive class; None takes the minority class.
    extra : str or None, default=None
        Extra per-image features: a CSV joined by ``sample_id``, or ``"handcrafted"``.
    holdout : str or None, default=None
        An official part (``"test"``: MedMNIST's test arrays, or a manifest's split column) kept
        out of all cross-validation; every fold model predicts it.
    dedupe : bool, default=False
        Keep one image of each exact or near-identical duplicate (they are reported either way).
    image_size : int or None, default=None
        Resize images to ``image_size`` x ``image_size`` (at least 4) while loading ``source``.
    intensity_window : (float, float) or None, default=None
        ``(low, high)``: bring 16-bit, float and DICOM grey values to 8 bits through this window
        instead of per-image min-max, while loading ``source``.
    demo_extra_signal : float or None, default=None
        How informative the demo data's extra features are (0: pure noise; None: 1).
    data_options : dict or None, default=None
        Other keyword options of :func:`load_data` while loading ``source``: the demo's
        ``n_samples``, a manifest's ``label_column`` ...

    Raises
    ------
    OptionError
        A value out of its range, or a loading option given with a ``Dataset`` (or, for
        ``demo_extra_signal``, with other data than the demo), naming the parameter.
    """

    source: str | os.PathLike | Dataset = "demo"
    positive: str | None = None
    extra: str | None = None
    holdout: str | None = None
    dedupe: bool = False
    image_size: int | None = None
    intensity_window: tuple[float, float] | None = None
    demo_extra_signal: float | None = None
    data_options: dict | None = None

    def __post_init__(self):
        if isinstance(self.source, Dataset):
            for option in (*_LOADING, "data_options"):
                if getattr(self, option):
                    raise OptionError(
                        option,
                        "applies when evaluate loads the data: pass it to load_data for a Dataset "
                        "you loaded yourself",
                    )
        for option, name in _LOADING.items():
            if name in (self.data_options or {}):
                raise OptionError("data_options", f"{name}: give it as {option}=, not among the data options")
        check_image_size(self.image_size)
        # Kept as two floats: the same window, however it was written, loads the same data.
        object.__setattr__(self, "intensity_window", check_window(self.intensity_window))
        if self.demo_extra_signal is not None:
            if self.source != "demo":
                raise OptionError("demo_extra_signal", "applies to the demo data only")
            if not math.isfinite(self.demo_extra_signal):
                raise OptionError(
                    "demo_extra_signal", f"must be a finite number, got {self.demo_extra_signal}"
                )

    @property
    def load_options(self) -> dict:
        """The options of :func:`load_data` this object sets (none for a ``Dataset``)."""
        typed = {name: getattr(self, option) for option, name in _LOADING.items()}
        return {
            **(self.data_options or {}),
            **{name: value for name, value in typed.items() if value is not None},
        }
