"""Data stage: load images, labels and extra features into one :class:`Dataset`."""

from ._dataset import Dataset
from ._demo import make_demo
from ._duplicates import DuplicatePair, drop_duplicates, find_duplicates
from ._extra import HANDCRAFTED, check_missing, handcrafted_features, join_extra_csv, with_extra
from ._intensity import check_window, to_8bit
from ._loaders import load_data, load_image_folder, load_manifest, load_medmnist
from ._spec import Data
from ._thumbnails import THUMBNAILS_NAME, make_thumbnails, read_thumbnails, write_thumbnails

__all__ = [
    "Data",
    "HANDCRAFTED",
    "THUMBNAILS_NAME",
    "Dataset",
    "DuplicatePair",
    "check_missing",
    "check_window",
    "drop_duplicates",
    "find_duplicates",
    "handcrafted_features",
    "join_extra_csv",
    "load_data",
    "load_image_folder",
    "load_manifest",
    "load_medmnist",
    "make_demo",
    "make_thumbnails",
    "read_thumbnails",
    "to_8bit",
    "with_extra",
    "write_thumbnails",
]
