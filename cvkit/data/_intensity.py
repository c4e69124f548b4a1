"""Reading images at their full depth and bringing them to the 8 bits every model sees, by a rule
that is stated: 16-bit, 32-bit and float images are scaled per image from their own minimum and
maximum, or through a fixed window ``(low, high)`` the user gives; DICOM files (with pydicom)
through their rescale slope and intercept and then their own window. ``convert("L")`` is never
used on such images: Pillow clips I;16 values to 0..255, which keeps a 16-bit image's lowest
bits and throws away its signal.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DataError, OptionError

# Pillow modes whose values fit 8 bits per channel: read as they are (1, P, CMYK and YCbCr
# convert to grey or RGB without losing what they hold).
EIGHT_BIT_MODES = ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
# Single-channel modes of more than 8 bits: scaled by the rule.
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
DICOM_SUFFIXES = (".dcm", ".dicom")
MIN_MAX = "per-image min-max"
DICOM_INSTALL = 'reading DICOM needs pydicom: pip install -e ".[dicom]"'


def check_window(window) -> tuple[float, float] | None:
    """``(low, high)`` as two finite floats with low < high, or None; else an ``OptionError``."""
    if window is None:
        return None
    try:
        low, high = (float(v) for v in window)
    except (TypeError, ValueError):
        raise OptionError("intensity_window", f"takes two numbers LOW HIGH, got {window!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise OptionError(
            "intensity_window", f"{low:g} {high:g}: LOW and HIGH must be finite numbers with LOW < HIGH"
        )
    return low, high


def to_8bit(values: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Raw intensities -> uint8: linear from ``window`` (low -> 0, high -> 255, values outside
    clipped) or, without one, from the image's own minimum and maximum (a flat image -> 0)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = window if window is not None else (values.min(), values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def describe_rule(window, *, high_depth: bool, dicom: bool) -> str:
    """The rule in words, for the data set's identity and the report; "" when every image was
    8-bit and read as it is."""
    if window is not None:
        rule = f"intensity window [{window[0]:g}, {window[1]:g}] -> 0..255"
        return rule + (" (DICOM: after rescale slope/intercept)" if dicom else "")
    parts = []
    if high_depth:
        parts.append(f"16-bit/32-bit/float images scaled to 8-bit by {MIN_MAX}")
    if dicom:
        parts.append(f"DICOM: rescale slope/intercept, then the file's window (else {MIN_MAX})")
    return "; ".join(parts)


def high_depth_to_8bit(image, window, where) -> np.ndarray:
    """A Pillow image of a high-depth mode as uint8 by the rule (``where`` names it in errors)."""
    values = np.asarray(image)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise DataError(f"{where}: the image holds NaN or infinite values; cvkit cannot scale it to 8 bits")
    return to_8bit(values, window)


def read_dicom(path, window, where) -> np.ndarray:
    """A single-frame grey DICOM image as uint8: stored values -> RescaleSlope * x +
    RescaleIntercept (modality units, e.g. Hounsfield), then ``window`` if given, else the file's
    first WindowCenter/WindowWidth (DICOM's linear VOI function), else per-image min-max;
    MONOCHROME1 (low values bright) is inverted so that bright means high everywhere."""
    try:
        import pydicom
    except ImportError:
        raise DataError(f"{where}: {DICOM_INSTALL}") from None
    try:
        ds = pydicom.dcmread(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pydicom raises many kinds on a damaged or non-DICOM file
        raise DataError(f"{where}: cannot read the DICOM file ({exc}); is the file complete?") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(
            f"{where}: a multi-frame DICOM ({frames} frames); cvkit reads one 2-D image per sample: "
            "save each frame as its own file"
        )
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise DataError(
            f"{where}: a colour DICOM ({samples} samples per pixel, {ds.get('PhotometricInterpretation')}); "
            "cvkit reads grey DICOM only: convert it to PNG"
        )
    if "ModalityLUTSequence" in ds:
        raise DataError(
            f"{where}: the file maps its stored values through a Modality LUT sequence, which cvkit "
            "does not apply; convert it to PNG"
        )
    if "VOILUTSequence" in ds and "WindowCenter" not in ds and window is None:
        raise DataError(
            f"{where}: the file's display window is a VOI LUT sequence, which cvkit does not apply; "
            "pass --intensity-window LOW HIGH"
        )
    if str(ds.get("VOILUTFunction", "LINEAR")).upper() == "SIGMOID" and window is None:
        raise DataError(
            f"{where}: the file's window is SIGMOID, which cvkit does not apply; "
            "pass --intensity-window LOW HIGH"
        )
    try:
        stored = ds.pixel_array
    except Exception as exc:  # no pixel data, or a compression no installed handler decodes
        raise DataError(f"{where}: cannot decode the DICOM pixel data ({exc})") from None
    if stored.ndim != 2:
        raise DataError(f"{where}: DICOM pixel data of shape {stored.shape}; cvkit reads 2-D grey images")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = stored.astype(np.float64) * slope + intercept
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = (_first(ds.WindowCenter), _first(ds.WindowWidth))
        if width >= 1:  # DICOM PS3.3 C.11.2.1.2.1, the linear function: width 1 is a threshold
            window = (center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2)
            if window[1] <= window[0]:
                window = (window[0], window[0] + 1e-9)
    pixels = to_8bit(values, window)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        pixels = 255 - pixels
    return pixels


def _first(value) -> float:
    """WindowCenter/WindowWidth may hold several windows (alternatives); the first is the default."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)
