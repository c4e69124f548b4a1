"""The one in-memory data set type every stage downstream works with."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ..errors import DataError


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images, labels and everything known about each sample.

    ``images`` is uint8 ``(N, C, H, W)``; ``labels`` are integer indices into ``class_names``;
    ``positive`` is the index of the class whose probability the binary metrics score.
    ``extra`` holds optional per-sample tabular features (float, ``(N, F)``) named by
    ``extra_names``; ``groups`` optional group ids (e.g. patients) that must never be split.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    positive: int
    sample_ids: np.ndarray
    name: str = "data"
    groups: np.ndarray | None = None
    group_column: str | None = None  # where ``groups`` came from (e.g. a manifest's patient_id), for reports
    extra: np.ndarray | None = None
    extra_names: tuple[str, ...] = ()
    description: str = ""
    source: str = field(default="", compare=False)
    parts: np.ndarray | None = None  # official part of each sample (e.g. train/val/test), if the data has one
    # How images of more than 8 bits were brought to 8 ("" when all were 8-bit and read as they
    # are): part of the fingerprint, since another rule gives other pixels and other predictions.
    intensity: str = ""
    # The load_data call that gives this data set again ({"spec": ..., "options": {...}}), for
    # `cvkit verify`; None for data sets built in Python or cut from another.
    loaded_with: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        images, labels = self.images, self.labels
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(
                f"{self.name}: images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}"
            )
        n = len(images)
        if labels.shape != (n,):
            raise DataError(f"{self.name}: {n} images but labels of shape {labels.shape}")
        if len(self.sample_ids) != n:
            raise DataError(f"{self.name}: {n} images but {len(self.sample_ids)} sample ids")
        if len(set(self.sample_ids.tolist())) != n:
            raise DataError(f"{self.name}: sample ids are not unique; every sample needs its own id")
        if n and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise DataError(
                f"{self.name}: labels must lie in 0..{len(self.class_names) - 1} "
                f"({len(self.class_names)} class names), got {labels.min()}..{labels.max()}"
            )
        if not 0 <= self.positive < len(self.class_names):
            raise DataError(f"{self.name}: positive class index {self.positive} is not a class")
        if self.parts is not None and len(self.parts) != n:
            raise DataError(f"{self.name}: {n} images but {len(self.parts)} part labels")
        if self.groups is not None and len(self.groups) != n:
            raise DataError(f"{self.name}: {n} images but {len(self.groups)} group ids")
        if self.extra is not None:
            if self.extra.shape != (n, len(self.extra_names)):
                raise DataError(
                    f"{self.name}: extra features of shape {self.extra.shape} do not match "
                    f"{n} samples x {len(self.extra_names)} named columns"
                )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def positive_name(self) -> str:
        return self.class_names[self.positive]

    @property
    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=self.n_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    @property
    def label_mapping(self) -> str:
        """``0 = malignant (positive), 1 = benign``: the mapping every report prints."""
        return ", ".join(
            f"{i} = {name}" + (" (positive)" if i == self.positive else "")
            for i, name in enumerate(self.class_names)
        )

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the content (pixels, labels, ids, groups, extra features, the intensity rule),
        not of any file."""
        return self._content_digest(with_extra=True)

    @cached_property
    def fingerprint_without_extra(self) -> str:
        """The fingerprint of the content but the extra features: the data a model that does not
        read them trains on (equal to ``fingerprint`` for data without extra features)."""
        return self._content_digest(with_extra=False)

    def _content_digest(self, *, with_extra: bool) -> str:
        h = hashlib.sha256()
        for part in (self.images, self.labels.astype(np.int64)):
            h.update(str(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        h.update("\x1f".join(map(str, self.sample_ids.tolist())).encode())
        h.update("\x1f".join(self.class_names).encode())
        if self.groups is not None:
            h.update(b"groups" + "\x1f".join(map(str, self.groups.tolist())).encode())
        if self.intensity:
            h.update(b"intensity" + self.intensity.encode())
        if with_extra and self.extra is not None:
            h.update(b"extra" + "\x1f".join(self.extra_names).encode())
            h.update(np.ascontiguousarray(self.extra, dtype=np.float64).tobytes())
        return h.hexdigest()

    def subset(self, indices) -> Dataset:
        """The samples at ``indices`` (a training, validation or test part of a split)."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(
            images=self.images[idx],
            labels=self.labels[idx],
            class_names=self.class_names,
            positive=self.positive,
            sample_ids=self.sample_ids[idx],
            name=self.name,
            groups=None if self.groups is None else self.groups[idx],
            group_column=self.group_column,
            extra=None if self.extra is None else self.extra[idx],
            parts=None if self.parts is None else self.parts[idx],
            extra_names=self.extra_names,
            description=self.description,
            source=self.source,
            intensity=self.intensity,
        )

    def split_off(self, part: str | None) -> tuple[Dataset, Dataset | None]:
        """``(cross-validation data, hold-out data)``: the samples of the official ``part`` (e.g.
        MedMNIST's ``test`` arrays, or a manifest's ``split`` column) are kept out of all CV."""
        if part is None:
            return self, None
        if self.parts is None:
            raise DataError(
                f"--holdout {part}: {self.name} has no official parts; use a MedMNIST archive or "
                "a manifest with a 'split' column"
            )
        mask = self.parts == part
        if not mask.any() or mask.all():
            raise DataError(
                f"--holdout {part}: {self.name} has {int(mask.sum())} of {len(self)} samples in part "
                f"{part!r}; its parts are {', '.join(sorted(set(self.parts.tolist())))}"
            )
        return self.subset(np.flatnonzero(~mask)), self.subset(np.flatnonzero(mask))

    def with_positive(self, positive: str | None) -> Dataset:
        """Name the positive class; ``None`` picks the minority class (ties: the lower index)."""
        if positive is None:
            counts = np.bincount(self.labels, minlength=self.n_classes)
            index = int(np.argmin(counts))
        elif positive in self.class_names:
            index = self.class_names.index(positive)
        else:
            raise DataError(
                f"positive class {positive!r} is not a class of {self.name}; "
                f"choose one of: {', '.join(self.class_names)}"
            )
        return replace(self, positive=index) if index != self.positive else self
