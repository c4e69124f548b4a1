import random
from pathlib import Path

import numpy as np
import pytest
import torch

from cvkit.data import make_demo

BREASTMNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "breastmnist.npz"


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny():
    """A small demo set: 60 images of 16 x 16, fast enough to train ResNet-18 for an epoch."""
    return make_demo(60, image_size=16, seed=1)


@pytest.fixture
def tiny_npz(tmp_path, tiny):
    """The tiny set as a BreastMNIST-style archive (0 = malignant), for the command line."""
    path = tmp_path / "breastmnist_tiny.npz"
    images = tiny.images[:, 0]
    labels = 1 - tiny.labels[:, None]
    np.savez(
        path,
        train_images=images[:40],
        train_labels=labels[:40],
        val_images=images[40:50],
        val_labels=labels[40:50],
        test_images=images[50:],
        test_labels=labels[50:],
    )
    return path


@pytest.fixture
def write_plugin(tmp_path):
    def write(name, source):
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        return path

    return write
