"""Small thumbnails of a data set's images, kept in the run folder for the reports.

A report is a function of the run folder alone (``cvkit report RUN`` has nothing else), so the
pictures of the discordant-case gallery must be there: ``evaluate`` writes one compressed array of
every cross-validation sample's image, longest side at most ``THUMBNAIL_SIDE`` pixels, uint8, grey
or RGB as the data is, keyed by sample id.

Sizes (``np.savez_compressed``, measured): BreastMNIST's 780 grey 28 x 28 images are kept as they
are, 612 kB raw, 0.56 MB on disk; 428 grey images of 224 px shrink to 64 x 64, 1.75 MB raw, 1.25 to
1.55 MB on disk (RGB up to three times that). 10,000 such grey images would add about 35 MB: small
beside the data's own files; a report shows a few dozen of them.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .. import files
from ._dataset import Dataset

THUMBNAILS_NAME = "thumbnails.npz"
THUMBNAIL_SIDE = 64
# Images smaller than this on either side are placeholders (a tabular data set built in Python
# with (N, 1, 1, 1) images), not pictures: no thumbnails for them.
MIN_PICTURE_SIDE = 4


def make_thumbnails(dataset: Dataset, *, max_side: int = THUMBNAIL_SIDE) -> np.ndarray | None:
    """The images of ``dataset`` shrunk so that their longest side is at most ``max_side``.

    Parameters
    ----------
    dataset : Dataset
        The data set (its images are uint8 ``(N, C, H, W)``).
    max_side : int, default=64
        The longest side of a thumbnail, in pixels; smaller images keep their size.

    Returns
    -------
    numpy.ndarray or None
        uint8 ``(N, h, w)`` for grey images (one channel, or more than one but not three: the
        first channel), ``(N, h, w, 3)`` for RGB images; None when the images are placeholders
        (a side under 4 pixels) rather than pictures.
    """
    images = dataset.images
    n, channels, height, width = images.shape
    if min(height, width) < MIN_PICTURE_SIDE:
        return None
    pictures = images.transpose(0, 2, 3, 1) if channels == 3 else images[:, 0]
    scale = max_side / max(height, width)
    if scale >= 1:
        return np.ascontiguousarray(pictures)
    from PIL import Image

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Area averaging (box filter): every source pixel counts once, no aliasing of speckle.
    return np.stack([np.asarray(Image.fromarray(p).resize(size, Image.Resampling.BOX)) for p in pictures])


def write_thumbnails(dataset: Dataset, folder, *, max_side: int = THUMBNAIL_SIDE) -> Path | None:
    """Write the thumbnails of ``dataset`` into ``folder`` (``thumbnails.npz``), atomically.

    Parameters
    ----------
    dataset : Dataset
        The data set whose samples the run's reports show.
    folder : str or path
        The run folder.
    max_side : int, default=64
        The longest side of a thumbnail, in pixels.

    Returns
    -------
    Path or None
        The written file, or None when the data set has no pictures (see :func:`make_thumbnails`).
    """
    thumbnails = make_thumbnails(dataset, max_side=max_side)
    if thumbnails is None:
        return None
    buffer = io.BytesIO()
    np.savez_compressed(buffer, ids=np.asarray(dataset.sample_ids).astype(str), images=thumbnails)
    path = Path(folder) / THUMBNAILS_NAME
    files.write_bytes(path, buffer.getvalue())
    return path


def read_thumbnails(folder) -> dict[str, np.ndarray] | None:
    """The thumbnails a run folder keeps, by sample id.

    Parameters
    ----------
    folder : str or path
        The run folder.

    Returns
    -------
    dict of str to numpy.ndarray or None
        Each sample id's uint8 thumbnail (``(h, w)`` grey or ``(h, w, 3)`` RGB); None when the
        folder holds no thumbnails (a run made before cvkit kept them, or data without pictures)
        or a file that cannot be read as such.
    """
    path = Path(folder) / THUMBNAILS_NAME
    try:
        with np.load(path, allow_pickle=False) as archive:
            ids, images = archive["ids"], archive["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(ids) != len(images):
        return None
    return dict(zip(ids.astype(str).tolist(), images))
