"""A built-in, deterministic synthetic ultrasound-like data set (no download, no real patients).

Each image is a grey lesion on speckled tissue. Benign lesions are oval with smooth margins and
homogeneous inside; malignant ones have irregular (lobulated, spiculated) margins, heterogeneous
texture and sometimes posterior acoustic shadowing. A share of each class is drawn from the other
class's appearance, so a small CNN reaches an AUC clearly above chance but clearly below 1.
Three extra features come with it: age (shifted for malignant by ``extra_signal`` standard
deviations), lesion size in mm (from the drawn lesion, so partly redundant with the image) and a
pure-noise column. ``extra_signal=0`` makes all three pure noise (sizes are shuffled).
"""

from __future__ import annotations

import numpy as np

from ._dataset import Dataset

DESCRIPTION = (
    "cvkit demo: synthetic ultrasound-like lesions (not real patients); "
    "benign vs malignant about 2:1, extra features age, lesion_size_mm, noise"
)


def make_demo(
    n_samples: int = 428,
    *,
    image_size: int = 32,
    malignant_fraction: float = 1 / 3,
    extra_signal: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Generate the demo data set; the same arguments always give the same bytes."""
    rng = np.random.default_rng(seed)
    n_malignant = int(round(n_samples * malignant_fraction))
    labels = np.zeros(n_samples, dtype=np.int64)
    labels[rng.permutation(n_samples)[:n_malignant]] = 1

    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
    images = np.empty((n_samples, 1, image_size, image_size), dtype=np.uint8)
    radius_px = np.empty(n_samples)
    for i, malignant in enumerate(labels):
        # About one lesion in eight looks like the other class: the irreducible error.
        looks_malignant = bool(malignant) != (rng.random() < 0.12)
        images[i, 0], radius_px[i] = _lesion(rng, xx, yy, image_size, looks_malignant)

    age = rng.normal(52.0, 12.0, n_samples) + extra_signal * 12.0 * (labels - labels.mean())
    size_mm = radius_px * 1.6 + rng.normal(0.0, 1.5, n_samples)
    if extra_signal == 0:  # every extra column pure noise: sizes shuffled away from their lesions
        size_mm = rng.permutation(size_mm)
    noise = rng.normal(0.0, 1.0, n_samples)
    extra = np.column_stack([np.round(age, 1), np.round(size_mm, 2), noise])

    return Dataset(
        images=images,
        labels=labels,
        class_names=("benign", "malignant"),
        positive=1,
        sample_ids=np.array([f"demo-{i:04d}" for i in range(n_samples)]),
        name="demo",
        extra=extra,
        extra_names=("age", "lesion_size_mm", "noise"),
        description=DESCRIPTION,
        source="demo",
    )


def _lesion(rng, xx, yy, size, malignant):
    """One speckled image with one lesion; returns (uint8 image, mean lesion radius in px)."""
    scale = size / 32.0
    cy, cx = size / 2 + rng.normal(0, 2.5 * scale, 2)
    r0 = rng.uniform(5.0, 8.5) * scale + (0.8 * scale if malignant else 0.0)
    theta = np.arctan2(yy - cy, xx - cx)
    dist = np.hypot(yy - cy, xx - cx)

    # Margin: a benign lesion is an ellipse; a malignant one adds lobulation and spicules.
    elongation = rng.uniform(0.0, 0.25)
    boundary = 1 + elongation * np.cos(2 * (theta - rng.uniform(0, np.pi)))
    irregularity = rng.uniform(0.15, 0.3) if malignant else rng.uniform(0.0, 0.05)
    for k in rng.choice(np.arange(4, 10), size=3, replace=False):
        boundary += irregularity * rng.uniform(0.3, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    softness = (rng.uniform(0.8, 1.6) if malignant else rng.uniform(0.4, 0.9)) * scale
    inside = 1 / (1 + np.exp((dist - r0 * boundary) / softness))

    tissue = 0.55 + 0.08 * _smooth_noise(rng, size, 4)
    heterogeneity = rng.uniform(0.1, 0.25) if malignant else rng.uniform(0.01, 0.06)
    lesion = 0.22 + heterogeneity * _smooth_noise(rng, size, 2)
    image = tissue * (1 - inside) + lesion * inside
    if rng.random() < (0.45 if malignant else 0.1):  # posterior acoustic shadowing
        below = (yy > cy) & (np.abs(xx - cx) < r0 * 0.9)
        image = np.where(below, image * rng.uniform(0.6, 0.8), image)

    speckle = rng.gamma(10.0, 1 / 10.0, image.shape)  # multiplicative, as in ultrasound
    image = np.clip(image * speckle, 0, 1)
    return np.round(image * 255).astype(np.uint8), r0 * float(boundary.mean()) / scale


def _smooth_noise(rng, size, cell):
    """Zero-mean, unit-scale noise smoothed over blocks of about ``cell`` pixels."""
    coarse = rng.normal(0, 1, (size // cell + 2, size // cell + 2))
    fine = np.kron(coarse, np.ones((cell, cell)))[:size, :size]
    kernel = np.ones(cell) / cell
    fine = np.apply_along_axis(np.convolve, 0, fine, kernel, mode="same")
    fine = np.apply_along_axis(np.convolve, 1, fine, kernel, mode="same")
    return fine / (fine.std() + 1e-9)
