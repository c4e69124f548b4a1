"""Loaders that turn files on disk into a :class:`Dataset`."""

from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import DataError, OptionError
from ..files import STORE_NAME
from ._dataset import Dataset
from ._demo import make_demo
from ._extra import ID_COLUMNS, feature_value, read_csv, warn_id_like
from ._intensity import (
    DICOM_SUFFIXES,
    EIGHT_BIT_MODES,
    HIGH_DEPTH_MODES,
    check_window,
    describe_rule,
    high_depth_to_8bit,
    read_dicom,
    to_8bit,
)

# MedMNIST v2 label meanings (the data set's own "label" dict), for the binary sets.
MEDMNIST_CLASSES = {
    "breastmnist": ("malignant", "normal/benign"),
    "pneumoniamnist": ("normal", "pneumonia"),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", *DICOM_SUFFIXES}
IMAGE_COLUMNS = ("image", "path", "file", "filename")
GREY_MODES = ("L", "LA", "1")  # read at full depth, every image is one of these or a colour mode


def check_image_size(size: int | None) -> None:
    """An ``OptionError`` unless ``size`` (the side images are resized to) is None or at least 4."""
    if size is not None and size < 4:
        raise OptionError("image_size", f"must be at least 4, got {size}")


def load_data(spec: str = "demo", *, positive: str | None = None, **options) -> Dataset:
    """Load a data set: the demo, a MedMNIST ``.npz``, an image folder or a CSV manifest.

    Parameters
    ----------
    spec : str, default="demo"
        ``"demo"`` (a built-in synthetic set), or the path of a MedMNIST ``.npz``, an image folder
        (one sub-folder per class) or a CSV manifest.
    positive : str or None, default=None
        Name of the positive class; None takes the minority class.
    **options
        Options of the loader ``spec`` picks: ``image_size`` (resize to N x N, at least 4) and
        ``intensity_window`` (``(low, high)`` for 16-bit, float and DICOM images) for files;
        ``make_demo``'s for the demo; ``load_manifest``'s columns for a manifest.

    Returns
    -------
    Dataset
        Images, labels, groups and extra features, with the options it was loaded with.

    Raises
    ------
    OptionError
        An option out of range, naming the parameter (``image_size must be at least 4, got 2``).
    DataError
        A missing or unreadable file, an unknown format, or data with a single class.
    """
    check_image_size(options.get("image_size"))
    if options.get("intensity_window") is not None:
        options["intensity_window"] = check_window(options["intensity_window"])
    if spec == "demo":
        if options.pop("intensity_window", None) is not None:
            raise OptionError("intensity_window", "applies to image files and arrays, not to the demo data")
        dataset = make_demo(**options)
    else:
        path = Path(spec)
        if not path.exists():
            raise DataError(
                f"{spec}: no such file or folder; pass --data demo, a MedMNIST .npz, "
                "an image folder (one sub-folder per class) or a CSV manifest"
            )
        if path.is_dir():
            dataset = load_image_folder(path, **options)
        elif path.suffix == ".npz":
            dataset = load_medmnist(path, **options)
        elif path.suffix == ".csv":
            dataset = load_manifest(path, **options)
        else:
            raise DataError(f"{spec}: unknown data format {path.suffix!r}; expected .npz, .csv or a folder")
    if len(np.unique(dataset.labels)) < 2:
        only = dataset.class_names[int(dataset.labels[0])] if len(dataset) else "none"
        raise DataError(
            f"{dataset.source or spec}: only one class present ({only}); "
            "a comparison needs samples of at least two classes"
        )
    spec = spec if spec == "demo" else str(Path(spec).resolve())
    return replace(dataset.with_positive(positive), loaded_with=dict(spec=spec, options=options))


def load_medmnist(
    path,
    *,
    parts=("train", "val", "test"),
    class_names=None,
    image_size: int | None = None,
    intensity_window=None,
) -> Dataset:
    """A MedMNIST ``.npz``; the official parts are pooled for cross-validation by default. Arrays
    of more than 8 bits (uint16, float) are scaled to 8 bits per image, or through
    ``intensity_window``, as image files are."""
    path = Path(path)
    try:
        archive = np.load(path)
        names = [f"{part}_{kind}" for part in parts for kind in ("images", "labels")]
        missing = [name for name in names if name not in archive.files]
        if missing:
            raise DataError(
                f"{path}: not a MedMNIST archive, missing array(s) {', '.join(missing)}; "
                f"expected {', '.join(names)}"
            )
        images = [archive[f"{part}_images"] for part in parts]
        labels = [archive[f"{part}_labels"] for part in parts]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read the archive ({exc}); is the file complete?") from None
    if any(part.ndim == 2 and part.shape[1] > 1 for part in labels):
        raise DataError(
            f"{path}: multi-label MedMNIST sets are not supported "
            f"(labels {', '.join(str(part.shape) for part in labels)})"
        )
    for name, arrays in (("images", images), ("labels", labels)):
        if len({a.shape[1:] for a in arrays}) > 1:
            raise DataError(
                f"{path}: the parts' {name} differ in shape "
                f"({', '.join(f'{p} {a.shape}' for p, a in zip(parts, arrays))}); "
                "is the archive from one data set?"
            )
    image_array = np.concatenate(images)
    label_array = np.concatenate(labels)
    if len(image_array) != len(label_array):
        raise DataError(
            f"{path}: {len(image_array)} images but {len(label_array)} labels; "
            "each *_images array needs a *_labels array of the same length"
        )
    label_array = label_array.reshape(-1).astype(np.int64)
    if image_array.ndim == 3:
        image_array = image_array[:, None]
    elif image_array.ndim == 4:
        image_array = np.moveaxis(image_array, -1, 1)
    window = check_window(intensity_window)
    rule = ""
    if image_array.dtype != np.uint8 or window is not None:
        if image_array.dtype.kind == "f" and not np.isfinite(image_array).all():
            raise DataError(f"{path}: the images hold NaN or infinite values; cvkit cannot scale them")
        image_array = np.stack([to_8bit(image, window) for image in image_array])
        rule = describe_rule(window, high_depth=True, dicom=False)
    if image_size and image_array.shape[-2:] != (image_size, image_size):
        image_array = _resize(image_array, image_size)
    key = path.stem.split("_")[0].lower()
    if class_names is None:
        n_classes = int(label_array.max()) + 1
        class_names = MEDMNIST_CLASSES.get(key) or tuple(f"class_{i}" for i in range(n_classes))
    ids = np.array([f"{part}-{i:05d}" for part, arr in zip(parts, images) for i in range(len(arr))])
    part_of = np.array([part for part, arr in zip(parts, images) for _ in range(len(arr))])
    return Dataset(
        images=np.ascontiguousarray(image_array),
        labels=label_array,
        class_names=tuple(class_names),
        positive=0,
        sample_ids=ids,
        name=key,
        parts=part_of,
        # The run states which parts it pools (--holdout keeps one out).
        description=_described(f"MedMNIST {key}", rule),
        source=str(path),
        intensity=rule,
    )


def load_image_folder(root, *, image_size: int | None = None, intensity_window=None) -> Dataset:
    """One sub-folder per class, named by the class; sample ids are the relative paths.

    Symlinked folders and files are followed (a folder reached twice, as in a symlink loop, is read
    once). Hidden folders and cvkit's own output folders (a run folder, or a reports folder of
    runs, left there by ``--data .``) are not classes."""
    root = Path(root)
    class_dirs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _is_cvkit_output(folder):
            warnings.warn(
                f"{folder}: skipped, not a class: it holds cvkit run results ({STORE_NAME}); "
                "keep --out and --reports-dir outside the image folder",
                stacklevel=2,
            )
        else:
            class_dirs.append(folder)
    if not class_dirs:
        raise DataError(
            f"{root}: no class sub-folders; put the images of each class in a folder "
            f"named after the class (e.g. {root}/benign/*.png)"
        )
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = _image_files(class_dir)
        if not files:
            raise DataError(
                f"{class_dir}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        paths += files
        labels += [label] * len(files)
    window = check_window(intensity_window)
    images, rule = _read_images(paths, image_size, where=lambda i: str(paths[i]), window=window)
    return Dataset(
        images=images,
        labels=np.array(labels, dtype=np.int64),
        class_names=tuple(d.name for d in class_dirs),
        positive=0,
        sample_ids=np.array([str(p.relative_to(root)) for p in paths]),
        name=root.name,
        description=_described(f"image folder {root.name}", rule),
        source=str(root),
        intensity=rule,
    )


def _is_cvkit_output(folder: Path) -> bool:
    """A run folder (it holds a store) or a folder of run folders (cvkit's reports folder)."""
    if (folder / STORE_NAME).is_file():
        return True
    with os.scandir(folder) as entries:  # a class folder of many images: no stat per file
        return any(e.is_dir() and os.path.isfile(os.path.join(e.path, STORE_NAME)) for e in entries)


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder``, through symlinked folders and files too. A folder is
    read once by its real path: a symlink loop ends there instead of recursing for ever, and two
    links to one folder do not read its images twice."""
    seen = set()
    files = []
    for directory, subfolders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        files += [Path(directory, name) for name in names if Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files)


def load_manifest(
    path,
    *,
    image_column: str | None = None,
    label_column: str = "label",
    group_column: str | None = None,
    id_column: str | None = None,
    class_names=None,
    image_size: int | None = None,
    intensity_window=None,
) -> Dataset:
    """A CSV with an image path (relative to the CSV), a label, and optional group, id, ``split``
    (official part, e.g. test) and numeric extra-feature columns (every other column)."""
    path = Path(path)
    columns, rows, lines = read_csv(path)
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")
    image_column = image_column or next((c for c in IMAGE_COLUMNS if c in columns), None)
    id_column = id_column or next((c for c in ID_COLUMNS if c in columns), None)
    if group_column is None:
        group_column = next((c for c in ("group", "patient_id", "patient") if c in columns), None)
    missing = [
        name
        for name, col in (("image path", image_column), ("label", label_column))
        if col is None or col not in columns
    ]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns)}; "
            f"name the image column one of {', '.join(IMAGE_COLUMNS)} and the label column "
            f"{label_column!r}"
        )

    def column_values(column, what, advice):
        """The column's cells, normalised as every name is (surrounding white space stripped);
        an empty or missing cell is an error naming its line."""
        values = [_name(row[column]) for row in rows]
        empty = next((line for line, value in zip(lines, values) if not value), None)
        if empty is not None:
            raise DataError(f"{path}, row {empty}: empty {what}; every row needs {advice}")
        return values

    raw_labels = column_values(
        label_column, "label", f"its class in column {label_column!r} (drop unlabelled rows)"
    )
    if class_names is None:
        class_names = tuple(sorted(set(raw_labels), key=_natural_key))
    lookup = {name: i for i, name in enumerate(class_names)}
    for line, value in zip(lines, raw_labels):
        if value not in lookup:
            raise DataError(
                f"{path}, row {line}: unknown label {value!r}; known classes: {', '.join(class_names)}"
            )
    labels = np.array([lookup[v] for v in raw_labels], dtype=np.int64)

    base = path.parent
    files = column_values(image_column, "image path", f"an image file in column {image_column!r}")
    image_paths = [base / name for name in files]
    images, rule = _read_images(
        image_paths,
        image_size,
        where=lambda i: f"{path}, row {lines[i]} ({files[i]})",
        window=check_window(intensity_window),
    )

    split_column = "split" if "split" in columns else None
    used = {image_column, label_column, group_column, id_column, split_column}
    extra_names = tuple(c for c in columns if c not in used)
    warn_id_like(
        extra_names,
        path,
        "name it patient_id (the column that keeps a patient's images in one fold) or group, or drop it",
    )
    extra = None
    if extra_names:
        extra = np.array(
            [[feature_value(row[c], path, line, c) for c in extra_names] for line, row in zip(lines, rows)]
        )
    ids = (
        np.array([row[id_column] for row in rows])
        if id_column
        else np.array([row[image_column] for row in rows])
    )
    if len(set(ids.tolist())) != len(ids):
        dup = next(v for v in ids.tolist() if ids.tolist().count(v) > 1)
        raise DataError(f"{path}: duplicate sample id {dup!r}; every row needs its own id")
    # Group ids are names like labels: "p3 " and "p3" are one patient, never on both sides of a split.
    groups = (
        np.array(column_values(group_column, "group id", f"its group (patient) in column {group_column!r}"))
        if group_column
        else None
    )
    parts = np.array([_name(row[split_column]) for row in rows]) if split_column else None
    return Dataset(
        images=images,
        labels=labels,
        class_names=tuple(class_names),
        positive=0,
        sample_ids=ids,
        name=path.stem,
        groups=groups,
        group_column=group_column if groups is not None else None,
        extra=extra,
        parts=parts,
        extra_names=extra_names,
        description=_described(f"manifest {path.name}", rule),
        source=str(path),
        intensity=rule,
    )


def _read_images(paths, image_size, where, window=None) -> tuple[np.ndarray, str]:
    """Read image files into uint8 (N, C, H, W), grey unless any image has colour, and the rule
    that brought them to 8 bits (see ``_intensity``; "" when all were 8-bit and read as they are)."""
    from PIL import Image, UnidentifiedImageError

    loaded = []
    high_depth = dicom = False
    for i, p in enumerate(paths):
        try:
            if Path(p).suffix.lower() in DICOM_SUFFIXES:
                loaded.append(Image.fromarray(read_dicom(p, window, where(i)), "L"))
                dicom = True
                continue
            with Image.open(p) as im:
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    raise DataError(
                        f"{where(i)}: a multi-frame image ({frames} frames); cvkit reads one 2-D image "
                        "per sample: save each frame as its own file"
                    )
                im.load()
                if im.mode in HIGH_DEPTH_MODES:
                    loaded.append(Image.fromarray(high_depth_to_8bit(im, window, where(i)), "L"))
                    high_depth = True
                elif im.mode not in EIGHT_BIT_MODES:
                    raise DataError(
                        f"{where(i)}: image mode {im.mode} cannot be read faithfully; save it as 8- or "
                        "16-bit grey, 32-bit float grey or 8-bit RGB"
                    )
                elif window is not None and im.mode not in GREY_MODES:
                    raise DataError(
                        f"{where(i)}: --intensity-window applies to grey images, this one is {im.mode}"
                    )
                elif window is not None:
                    loaded.append(Image.fromarray(to_8bit(np.asarray(im.convert("L")), window), "L"))
                else:
                    loaded.append(im.copy())
        except FileNotFoundError:
            raise DataError(f"{where(i)}: image file not found; looked for {Path(p).absolute()}") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(
                f"{where(i)}: cannot read the image ({exc}); is the file corrupt or truncated?"
            ) from None
    # An RGB file whose channels are equal is a grey image saved as colour; a true colour image
    # among grey ones (a Doppler overlay, an annotated screenshot) is a data problem, not a mode.
    colour = [im.mode not in GREY_MODES and not _equal_channels(im) for im in loaded]
    if any(colour) and not all(colour):
        odd = colour.index(not colour[0])
        kinds = ("colour", "grey") if colour[odd] else ("grey", "colour")
        raise DataError(
            f"{where(odd)}: a {kinds[0]} image among {kinds[1]} ones ({sum(colour)} of {len(loaded)} "
            "images are colour); convert them all to grey or all to colour"
        )
    mode = "RGB" if any(colour) else "L"
    arrays = []
    for im in loaded:
        im = im.convert(mode)
        if image_size:
            im = im.resize((image_size, image_size), Image.BILINEAR)
        arrays.append(np.asarray(im, dtype=np.uint8))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape
        odd = next(i for i, a in enumerate(arrays) if a.shape != first)
        raise DataError(
            f"{where(odd)}: image size {arrays[odd].shape[:2]} differs from {first[:2]} of the "
            "first image; pass --image-size N to resize all images"
        )
    stacked = np.stack(arrays)
    rule = describe_rule(window, high_depth=high_depth, dicom=dicom)
    return (stacked[:, None] if stacked.ndim == 3 else np.moveaxis(stacked, -1, 1).copy()), rule


def _described(description: str, rule: str) -> str:
    return f"{description} ({rule})" if rule else description


def _equal_channels(image) -> bool:
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 (N, C, H, W) images to size x size, one PIL call per image plane."""
    from PIL import Image

    out = np.empty((*images.shape[:2], size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        for c, plane in enumerate(image):
            out[i, c] = np.asarray(Image.fromarray(plane).resize((size, size), Image.BILINEAR))
    return out


def _name(cell: str) -> str:
    """A label, group id or file name as written in a cell: surrounding white space is not part of it."""
    return cell.strip()


def _natural_key(text: str):
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)
