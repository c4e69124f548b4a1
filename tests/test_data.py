import numpy as np
import pytest
from conftest import BREASTMNIST
from PIL import Image

from cvkit.data import Dataset, load_data, load_image_folder, load_manifest, load_medmnist, make_demo
from cvkit.errors import DataError


def test_demo_is_deterministic_and_documented():
    a, b = make_demo(50, image_size=16), make_demo(50, image_size=16)
    assert np.array_equal(a.images, b.images) and a.fingerprint == b.fingerprint
    assert make_demo(50, image_size=16, seed=1).fingerprint != a.fingerprint
    assert "synthetic" in a.description


def test_demo_shape_classes_and_extra_features():
    demo = make_demo()
    assert demo.images.shape == (428, 1, 32, 32) and demo.images.dtype == np.uint8
    counts = demo.class_counts
    assert 1.8 < counts["benign"] / counts["malignant"] < 2.2
    assert demo.extra_names == ("age", "lesion_size_mm", "noise")


def test_demo_extra_signal_controls_age_shift():
    def age_gap(signal):
        d = make_demo(400, image_size=8, extra_signal=signal)
        return d.extra[d.labels == 1, 0].mean() - d.extra[d.labels == 0, 0].mean()

    assert abs(age_gap(0.0)) < 4
    assert age_gap(1.0) > 8


def test_fingerprint_follows_content_not_object(tiny):
    assert tiny.subset(np.arange(len(tiny))).fingerprint == tiny.fingerprint
    changed = tiny.images.copy()
    changed[0, 0, 0, 0] ^= 1
    other = Dataset(changed, tiny.labels, tiny.class_names, tiny.positive, tiny.sample_ids)
    assert other.fingerprint != tiny.fingerprint


def test_positive_defaults_to_minority_and_can_be_named(tiny):
    assert load_data("demo", n_samples=60, image_size=8).positive_name == "malignant"
    named = tiny.with_positive("benign")
    assert named.positive == 0 and "0 = benign (positive)" in named.label_mapping
    with pytest.raises(DataError, match="'cancer' is not a class.*benign, malignant"):
        tiny.with_positive("cancer")


def test_medmnist_pools_parts_and_names_classes(tiny_npz, tiny):
    data = load_medmnist(tiny_npz)
    assert len(data) == 60 and data.images.shape[1:] == (1, 16, 16)
    assert data.sample_ids[0] == "train-00000" and data.sample_ids[-1] == "test-00009"
    assert load_medmnist(tiny_npz, parts=("train",)).images.shape[0] == 40


@pytest.mark.skipif(not BREASTMNIST.exists(), reason="shared BreastMNIST archive not present")
def test_breastmnist_real_data_label_mapping():
    data = load_data(str(BREASTMNIST))
    assert len(data) == 780
    assert data.class_names == ("malignant", "normal/benign")
    assert data.positive_name == "malignant"  # minority (210), and label 0: never inferred from order
    assert data.class_counts == {"malignant": 210, "normal/benign": 570}


def test_npz_without_medmnist_arrays_is_a_clear_error(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, images=np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match="not a MedMNIST archive"):
        load_medmnist(path)


def _write_images(folder, n, size=(8, 8), value=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full(size, value + i, dtype=np.uint8)).save(folder / f"{i}.png")


def test_image_folder_one_subfolder_per_class(tmp_path):
    _write_images(tmp_path / "benign", 4)
    _write_images(tmp_path / "malignant", 3, value=100)
    data = load_image_folder(tmp_path)
    assert data.class_names == ("benign", "malignant")
    assert np.bincount(data.labels).tolist() == [4, 3]
    assert data.sample_ids[0] == "benign/0.png"


def test_image_folder_mixed_sizes_names_the_file(tmp_path):
    _write_images(tmp_path / "a", 2)
    _write_images(tmp_path / "b", 1, size=(9, 8))
    with pytest.raises(DataError, match=r"b/0.png: image size \(9, 8\) differs.*--image-size"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, image_size=8).images.shape == (3, 1, 8, 8)


def test_empty_class_folder_is_an_error(tmp_path):
    _write_images(tmp_path / "a", 2)
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_image_folder(tmp_path)


@pytest.fixture
def manifest(tmp_path):
    _write_images(tmp_path / "img", 6)
    rows = ["image,label,patient_id,age,size"]
    rows += [
        f"img/{i}.png,{'malignant' if i % 2 else 'benign'},p{i // 2},{40 + i},{1.5 * i}" for i in range(6)
    ]
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_manifest_with_groups_and_extra_features(manifest):
    data = load_manifest(manifest)
    assert data.class_names == ("benign", "malignant")
    assert data.groups.tolist() == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert data.extra_names == ("age", "size") and data.extra[3].tolist() == [43.0, 4.5]


def test_manifest_missing_image_file_names_the_row(manifest):
    text = manifest.read_text().replace("img/4.png", "img/missing.png")
    manifest.write_text(text)
    with pytest.raises(DataError, match=r"manifest.csv, row 6 \(img/missing.png\): image file not found"):
        load_manifest(manifest)


def test_manifest_unknown_label_names_the_row(manifest):
    with pytest.raises(DataError, match="row 3: unknown label 'malignant'; known classes: benign, cancer"):
        load_manifest(manifest, class_names=("benign", "cancer"))


def test_manifest_missing_label_column(manifest):
    manifest.write_text(manifest.read_text().replace("label", "diagnosis", 1))
    with pytest.raises(DataError, match="missing column\\(s\\) label"):
        load_manifest(manifest)


def test_manifest_text_in_extra_feature_names_column_and_row(manifest):
    manifest.write_text(manifest.read_text().replace(",43,", ",forty-three,"))
    with pytest.raises(DataError, match="row 5: column 'age' holds 'forty-three', not a number"):
        load_manifest(manifest)


def test_manifest_corrupt_image_is_reported(manifest, tmp_path):
    (tmp_path / "img" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="row 4.*cannot read the image"):
        load_manifest(manifest)


def test_single_class_is_rejected(manifest):
    manifest.write_text(manifest.read_text().replace("malignant", "benign"))
    with pytest.raises(DataError, match="only one class present \\(benign\\)"):
        load_data(str(manifest))


def test_unknown_data_path_says_what_is_accepted(tmp_path):
    with pytest.raises(DataError, match="no such file or folder; pass --data demo"):
        load_data(str(tmp_path / "nope.csv"))


def test_medmnist_resize(tiny_npz):
    assert load_medmnist(tiny_npz, image_size=24).images.shape == (60, 1, 24, 24)
