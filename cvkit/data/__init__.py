"""Data stage: load images, labels and extra features into one :class:`Dataset`."""
from ._dataset import Dataset
from ._demo import make_demo
from ._loaders import load_data, load_image_folder, load_manifest, load_medmnist

__all__ = ["Dataset", "load_data", "load_image_folder", "load_manifest", "load_medmnist", "make_demo"]
